//! Entry points for the fuzz targets of this crate's parsers of what
//! comes over the network outside IMAP and POP3 (`fuzz/`): the PROXY
//! protocol header and the proxy control line. Each must never panic,
//! whatever the bytes.

use crate::proxy::{ControlLine, Relayed};

/// The PROXY protocol v1 and v2 header parsers.
pub fn haproxy(data: &[u8]) {
    let _ = crate::haproxy::parse_v1(data);
    if data.len() >= 2 {
        let _ = crate::haproxy::parse_v2(data[0], data[1], &data[2..]);
    }
}

/// A control line, parsed, run against an empty session table and, when
/// it is a command, sent on as a peer would get it: the line sent reads
/// back as the same command.
pub fn control(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let Ok(parsed) = ControlLine::parse(&line) else {
        return;
    };
    let relayed = Relayed::default();
    let _ = crate::proxy::run_control_here(&parsed.command, &relayed);
    let again = ControlLine::parse(&parsed.command.to_line());
    assert_eq!(
        again.map(|l| l.command).as_ref(),
        Ok(&parsed.command),
        "a command sent to a peer reads back as another"
    );
}

//! Entry points for the fuzz targets of this crate's parsers of what
//! comes over the network outside IMAP and POP3 (`fuzz/`): the PROXY
//! protocol header, the proxy control line, and LMTP's command lines and
//! message data. Each must never panic,
//! whatever the bytes.

mod imap_session;

pub use imap_session::imap_session;

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

/// LMTP: each line parsed as a command, and the whole input read as the
/// data after DATA in pieces (the first byte picks their size): the data
/// never grows, and read whole or in pieces gives the same message and the
/// same end. (A CRLF may stay: a bare CR of the data before a line end.)
pub fn lmtp(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = crate::lmtp::Command::parse(&String::from_utf8_lossy(line));
    }
    let cut = usize::from(data.first().copied().unwrap_or(1) % 13) + 1;
    let whole = {
        let mut r = crate::lmtp::DataReader::new();
        let mut out = Vec::new();
        let end = r.push(data, &mut out, u64::MAX);
        (out, end)
    };
    // What a relay sends on of the message reads back as it.
    {
        let mut wire = Vec::new();
        let mut at_start = true;
        for piece in whole.0.chunks(cut) {
            crate::lmtp::relay::stuff(piece, &mut at_start, &mut wire);
        }
        crate::lmtp::relay::stuff_end(at_start, &mut wire);
        let mut r = crate::lmtp::DataReader::new();
        let mut back = Vec::new();
        assert_eq!(r.push(&wire, &mut back, u64::MAX), Some(wire.len()));
        let mut expected = whole.0.clone();
        if !expected.is_empty() && !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        assert_eq!(
            back, expected,
            "the relayed form reads back as another message"
        );
    }
    let mut r = crate::lmtp::DataReader::new();
    let mut out = Vec::new();
    let mut end = None;
    let mut at = 0;
    for piece in data.chunks(cut) {
        if let Some(n) = r.push(piece, &mut out, u64::MAX) {
            end = Some(at + n);
            break;
        }
        at += piece.len();
    }
    assert!(out.len() <= data.len(), "the data grew");
    if end.is_some() {
        assert_eq!((out, end), whole, "pieces read otherwise than the whole");
    }
}

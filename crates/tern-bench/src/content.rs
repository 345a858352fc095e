//! Message-content figures: FETCH of structure and headers, SEARCH, SORT
//! and THREAD over a whole large folder, cold (the first time the server
//! sees the folder's messages) and warm (median of later runs).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use crate::{median, time, Conn};

/// The commands measured, in order; the first is also measured cold.
pub const COMMANDS: &[&str] = &[
    "FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
    "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
    "SEARCH SUBJECT foo",
    "SEARCH TEXT zebra",
    "SEARCH SINCE 1-May-2022",
    "SEARCH LARGER 2000",
    "SEARCH FLAGGED",
    "SORT (DATE) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
];

/// Cold time of the first command, then warm medians of every command.
pub fn measure(
    addr: SocketAddr,
    user: &str,
    pw: &str,
    reps: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let mut c = Conn::login(addr, user, pw)?;
    c.cmd("SELECT INBOX")?;
    let (cold, _) = time(|| c.cmd(COMMANDS[0]))?;
    let mut warm = Vec::new();
    for cmd in COMMANDS {
        let mut runs = Vec::new();
        for _ in 0..reps {
            runs.push(time(|| c.cmd(cmd))?.0);
        }
        warm.push(median(runs));
    }
    c.cmd("LOGOUT")?;
    Ok((cold, warm))
}

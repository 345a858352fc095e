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

/// What `FETCH 1:* (BODY.PEEK[])` cost: octets received, time, and the
/// server's resident memory before and at its peak during the command.
pub struct Stream {
    pub bytes: usize,
    pub time: Duration,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
}

/// Fetches every message whole while `rss` (the server's resident memory,
/// KiB) is sampled every 5 ms: a server that streams holds about as much
/// at the end as at the start, whatever the folder's size.
pub fn stream_all(
    addr: SocketAddr,
    user: &str,
    pw: &str,
    rss: impl Fn() -> u64 + Send + Sync,
) -> Result<Stream> {
    let mut c = Conn::login(addr, user, pw)?;
    c.cmd("SELECT INBOX")?;
    let rss_before_kib = rss();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (res, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let res = time(|| c.cmd("FETCH 1:* (BODY.PEEK[])"));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (res, sampler.join().unwrap_or(0))
    });
    let (time, bytes) = res?;
    c.cmd("LOGOUT")?;
    Ok(Stream {
        bytes,
        time,
        rss_before_kib,
        rss_peak_kib: peak,
    })
}

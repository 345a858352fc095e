//! Many persistent sessions on a few mailboxes, each running the commands
//! of a busy client in a loop: the profile of a standard IMAP stress tool
//! (the many-sessions-per-folder issue measured tern with one).
//!
//! `mailboxes` accounts `s0..` (each its own INBOX, copies of one Maildir),
//! `per_box` sessions logged in to each, all at once, each on its own
//! thread. A session repeats: STATUS, LIST, SELECT, FETCH of ten messages
//! at a random place, STORE of a random flag on a random message, APPEND,
//! STORE `\Deleted` on what it appended, EXPUNGE. Every command is one
//! operation; the figures are operations per second over the whole run and
//! per interval (is the server as fast at the end as at the start?) and each
//! command's latency. Sessions come from several loopback addresses so that
//! Dovecot's limit of 50 per user and address lets them all in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::Conn;

/// The commands of one loop, in order (the names of the latency rows).
pub const COMMANDS: [&str; 8] = [
    "STATUS",
    "LIST",
    "SELECT",
    "FETCH",
    "STORE",
    "APPEND",
    "STORE \\Deleted",
    "EXPUNGE",
];

/// One server's figures.
pub struct Stress {
    /// Operations per second over the whole run.
    pub ops_per_s: f64,
    /// Operations per second in each interval, in order.
    pub intervals: Vec<f64>,
    /// Each command's latencies, p50 and p95 (COMMANDS order).
    pub latency: Vec<(Duration, Duration)>,
    /// Commands answered other than OK (counted, not fatal: a STORE on a
    /// message another session has just expunged may be refused).
    pub refused: u64,
}

/// A tiny deterministic generator (no dependency, the same sequence on both
/// servers).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n.max(1))) as u32
    }
}

fn exists_in(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS"))
        .filter_map(|n| n.parse().ok())
        .next_back()
}

/// Runs the profile against one server for `seconds`, reporting
/// throughput per `interval`.
pub fn measure(
    addr: SocketAddr,
    mailboxes: usize,
    per_box: usize,
    seconds: u64,
    interval: Duration,
) -> Result<Stress> {
    let sessions = mailboxes * per_box;
    // 40 sessions per source address.
    let from = |i: usize| 1 + (i / 40) as u8;
    let mut conns = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let local: SocketAddr = ([127, 0, 0, from(i)], 0).into();
        let mut c = Conn::open_from(addr, local)?;
        let user = format!("s{}", i % mailboxes);
        c.cmd(&format!("LOGIN {user} pw"))
            .with_context(|| format!("LOGIN of session {i}"))?;
        c.cmd("SELECT INBOX")?;
        conns.push(c);
    }
    let start = Arc::new(Barrier::new(sessions + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<Vec<Vec<Duration>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); COMMANDS.len()]));
    let message = b"From: stress@example.org\r\nTo: s@example.org\r\nSubject: stress loop\r\nMessage-ID: <stress@example.org>\r\n\r\nA message appended by the stress profile.\r\n";
    let mut threads = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let (start, stop, ops) = (start.clone(), stop.clone(), ops.clone());
        let (refused, samples) = (refused.clone(), samples.clone());
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
            let mut mine: Vec<Vec<Duration>> = vec![Vec::new(); COMMANDS.len()];
            let mut exists = 1u32;
            start.wait();
            let mut run = |k: usize,
                           c: &mut Conn,
                           f: &mut dyn FnMut(&mut Conn) -> Result<String>|
             -> Result<Option<String>> {
                let t = Instant::now();
                let r = f(c);
                mine[k].push(t.elapsed());
                ops.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.to_string().contains("connection closed") => Err(e),
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        Ok(None)
                    }
                }
            };
            while !stop.load(Ordering::Relaxed) {
                run(0, &mut c, &mut |c| {
                    c.cmd_text("STATUS INBOX (MESSAGES UIDNEXT UNSEEN)")
                })?;
                run(1, &mut c, &mut |c| c.cmd_text("LIST \"\" \"*\""))?;
                if let Some(text) = run(2, &mut c, &mut |c| c.cmd_text("SELECT INBOX"))? {
                    exists = exists_in(&text).unwrap_or(exists).max(1);
                }
                let first = 1 + rng.below(exists.saturating_sub(9).max(1));
                let last = (first + 9).min(exists);
                run(3, &mut c, &mut |c| {
                    c.cmd_text(&format!(
                        "FETCH {first}:{last} (UID FLAGS RFC822.SIZE ENVELOPE)"
                    ))
                })?;
                let flag = ["\\Seen", "\\Flagged", "\\Answered"][rng.below(3) as usize];
                let sign = if rng.below(2) == 0 { '+' } else { '-' };
                let target = 1 + rng.below(exists);
                run(4, &mut c, &mut |c| {
                    c.cmd_text(&format!("STORE {target} {sign}FLAGS ({flag})"))
                })?;
                let mut uid = 0;
                run(5, &mut c, &mut |c| {
                    uid = c.append(message)?;
                    Ok(String::new())
                })?;
                if uid > 0 {
                    run(6, &mut c, &mut |c| {
                        c.cmd_text(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                    })?;
                }
                run(7, &mut c, &mut |c| c.cmd_text("EXPUNGE"))?;
            }
            let _ = c.cmd("LOGOUT");
            let mut all = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for (k, v) in mine.into_iter().enumerate() {
                all[k].extend(v);
            }
            Ok(())
        }));
    }
    start.wait();
    let t0 = Instant::now();
    let mut intervals = Vec::new();
    let mut last = 0;
    let end = t0 + Duration::from_secs(seconds);
    let mut next = t0 + interval;
    while next <= end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = ops.load(Ordering::Relaxed);
        intervals.push((now - last) as f64 / interval.as_secs_f64());
        last = now;
        next += interval;
    }
    let total = ops.load(Ordering::Relaxed);
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a session thread panicked"))??;
    }
    let mut all = samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let latency = all
        .iter_mut()
        .map(|v| {
            v.sort_unstable();
            let at = |q: f64| {
                v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or_default()
            };
            (at(0.5), at(0.95))
        })
        .collect();
    Ok(Stress {
        ops_per_s: total as f64 / elapsed.as_secs_f64(),
        intervals,
        latency,
        refused: refused.load(Ordering::Relaxed),
    })
}

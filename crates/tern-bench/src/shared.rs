//! Many sessions on one large folder: every change one session makes must
//! reach each of the others at its next command. The figure the change
//! log is judged by (docs/BENCHMARKS.md, "many sessions on one folder").
//!
//! `sessions` readers SELECT INBOX; a writer then makes one change per
//! round (a flag set, a flag cleared, an APPEND, an EXPUNGE) and every
//! reader sends NOOP at once, on its own thread; a round ends when the last
//! reader has its answer. The sessions come from several loopback
//! addresses so that Dovecot's per-user-and-address limit (50 in the
//! oracle's configuration) lets them all in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{median, Conn};

/// One server's figures.
pub struct Shared {
    /// All readers' SELECTs, one after another.
    pub selects: Duration,
    /// Median round per kind of change.
    pub flag_set: Duration,
    pub flag_cleared: Duration,
    pub appended: Duration,
    pub expunged: Duration,
    /// Bytes the readers received over all rounds (the same work on both
    /// servers: each reader learns each change).
    pub bytes: usize,
}

/// A logged-in session from loopback address 127.0.0.`from`.
fn session(addr: SocketAddr, from: u8, user: &str, pw: &str) -> Result<Conn> {
    let local: SocketAddr = ([127, 0, 0, from], 0).into();
    let mut c = Conn::open_from(addr, local)?;
    c.cmd(&format!("LOGIN {user} {pw}"))?;
    Ok(c)
}

/// Runs the rounds against one server.
pub fn measure(
    addr: SocketAddr,
    user: &str,
    pw: &str,
    sessions: usize,
    rounds: usize,
) -> Result<Shared> {
    // 40 sessions per source address.
    let from = |i: usize| 1 + (i / 40) as u8;
    let mut writer = session(addr, from(sessions), user, pw)?;
    writer.cmd("SELECT INBOX")?;
    let t = Instant::now();
    let mut readers = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let mut c = session(addr, from(i), user, pw)?;
        c.cmd("SELECT INBOX")
            .with_context(|| format!("SELECT of reader {i}"))?;
        readers.push(c);
    }
    let selects = t.elapsed();
    let start = Arc::new(Barrier::new(sessions + 1));
    let done = Arc::new(Barrier::new(sessions + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for mut c in readers {
        let (start, done, stop) = (start.clone(), done.clone(), stop.clone());
        let (failed, bytes) = (failed.clone(), bytes.clone());
        threads.push(std::thread::spawn(move || loop {
            start.wait();
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match c.cmd("NOOP") {
                Ok(n) => {
                    bytes.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            done.wait();
        }));
    }
    let mut kinds: [Vec<Duration>; 4] = Default::default();
    let message = b"From: bench@example.org\r\nSubject: shared folder round\r\n\r\nbody\r\n";
    let mut run = |change: &mut dyn FnMut(&mut Conn) -> Result<()>| -> Result<Duration> {
        let t = Instant::now();
        change(&mut writer)?;
        start.wait();
        done.wait();
        Ok(t.elapsed())
    };
    for r in 0..rounds {
        let seq = r + 1;
        kinds[0].push(run(&mut |w| {
            w.cmd(&format!("STORE {seq} +FLAGS.SILENT (\\Flagged)"))
                .map(drop)
        })?);
        kinds[1].push(run(&mut |w| {
            w.cmd(&format!("STORE {seq} -FLAGS.SILENT (\\Flagged)"))
                .map(drop)
        })?);
        let mut uid = 0;
        kinds[2].push(run(&mut |w| {
            uid = w.append(message)?;
            Ok(())
        })?);
        kinds[3].push(run(&mut |w| {
            w.cmd(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
            w.cmd(&format!("UID EXPUNGE {uid}")).map(drop)
        })?);
    }
    stop.store(true, Ordering::SeqCst);
    start.wait();
    for t in threads {
        let _ = t.join();
    }
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} NOOPs failed");
    let [a, b, c, d] = kinds;
    Ok(Shared {
        selects,
        flag_set: median(a),
        flag_cleared: median(b),
        appended: median(c),
        expunged: median(d),
        bytes: bytes.load(Ordering::Relaxed),
    })
}

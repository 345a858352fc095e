//! The mail-flow figures: POP3 start on a large INBOX, delivery-to-EXISTS
//! latency of IDLE, and many idle sessions (tern only).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, time, Conn};

/// A minimal blocking POP3 client.
struct Pop {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop {
    fn login(addr: SocketAddr, user: &str, pw: &str) -> Result<Pop> {
        let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        s.set_nodelay(true)?;
        let mut p = Pop {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        p.line()?;
        p.cmd(&format!("USER {user}"))?;
        p.cmd(&format!("PASS {pw}"))?;
        Ok(p)
    }

    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            bail!("POP3 connection closed");
        }
        Ok(l)
    }

    fn cmd(&mut self, c: &str) -> Result<String> {
        self.w.write_all(format!("{c}\r\n").as_bytes())?;
        let l = self.line()?;
        if !l.starts_with("+OK") {
            bail!("{c}: {}", l.trim_end());
        }
        Ok(l)
    }

    /// A multi-line command; returns the number of lines.
    fn multi(&mut self, c: &str) -> Result<usize> {
        self.cmd(c)?;
        let mut n = 0;
        loop {
            if self.line()? == ".\r\n" {
                return Ok(n);
            }
            n += 1;
        }
    }
}

/// Login + STAT + UIDL + QUIT; returns the number of UIDLs.
fn pop3_start(addr: SocketAddr, user: &str, pw: &str) -> Result<usize> {
    let mut p = Pop::login(addr, user, pw)?;
    p.cmd("STAT")?;
    let n = p.multi("UIDL")?;
    p.cmd("QUIT")?;
    Ok(n)
}

/// One server's figures.
pub struct PushFigures {
    pub pop3_cold: Duration,
    pub pop3_warm: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

/// Writes a message into `folder/new` the way an MTA does (tmp, rename);
/// returns the instant of the rename.
fn deliver(folder: &Path, n: usize) -> Result<Instant> {
    let name = format!("{}.B{n}P{}.bench", 1_800_000_000 + n, std::process::id());
    let tmp = folder.join("tmp").join(&name);
    std::fs::write(
        &tmp,
        format!("From: bench@example.org\nSubject: latency {n}\n\nbody\n"),
    )?;
    let at = Instant::now();
    std::fs::rename(&tmp, folder.join("new").join(&name))?;
    Ok(at)
}

/// Reads lines until one ends in " EXISTS".
fn wait_exists(r: &mut BufReader<TcpStream>) -> Result<()> {
    let mut l = String::new();
    loop {
        l.clear();
        if r.read_line(&mut l)? == 0 {
            bail!("closed while idling");
        }
        if l.trim_end().ends_with(" EXISTS") {
            return Ok(());
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Measures one server: POP3 start cold and warm, then IDLE latency on a
/// new folder `INBOX.hxlat` whose directory is `maildir/.hxlat`.
pub fn measure(
    imap: SocketAddr,
    pop3: SocketAddr,
    maildir: &Path,
    user: &str,
    pw: &str,
    reps: usize,
    samples: usize,
) -> Result<PushFigures> {
    let (pop3_cold, n) = time(|| pop3_start(pop3, user, pw))?;
    if n == 0 {
        bail!("POP3 listed no messages");
    }
    let mut warm = Vec::new();
    for _ in 0..reps {
        warm.push(time(|| pop3_start(pop3, user, pw))?.0);
    }
    let mut c = Conn::login(imap, user, pw)?;
    let _ = c.cmd("CREATE INBOX.hxlat");
    c.cmd("SELECT INBOX.hxlat")?;
    let dir: PathBuf = maildir.join(".hxlat");
    c.send(b"i IDLE\r\n")?;
    let mut cont = String::new();
    c.r.read_line(&mut cont)?;
    if !cont.starts_with('+') {
        bail!("IDLE refused: {cont}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let at = deliver(&dir, i)?;
        wait_exists(&mut c.r)?;
        lat.push(at.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send(b"DONE\r\n")?;
    c.read_to("i")?;
    lat.sort();
    Ok(PushFigures {
        pop3_cold,
        pop3_warm: median(warm),
        latency_p50: percentile(&lat, 0.5),
        latency_p99: percentile(&lat, 0.99),
        latency_max: lat[lat.len() - 1],
    })
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses).
    let rest = s.rsplit_once(')').map(|x| x.1).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// Figures of many idle sessions on one server.
pub struct IdleFigures {
    pub sessions: usize,
    pub folders: usize,
    pub setup: Duration,
    pub cpu_ms_per_s: f64,
    pub kib_per_session: f64,
    pub expected: usize,
    pub spurious: usize,
    pub wake_all: Duration,
}

/// Opens `sessions` connections idling on `folders` folders, measures the
/// server's CPU while nothing happens, then delivers one message to one
/// folder and counts which sessions wake.
pub fn many_idle(
    imap: SocketAddr,
    pid: u32,
    maildir: &Path,
    user: &str,
    pw: &str,
    sessions: usize,
    folders: usize,
) -> Result<IdleFigures> {
    let mut admin = Conn::login(imap, user, pw)?;
    for f in 0..folders {
        let _ = admin.cmd(&format!("CREATE INBOX.hxidle{f}"));
    }
    let rss_before = crate::rss_kib(pid)?;
    let (setup, mut conns) = time(|| {
        let mut v = Vec::with_capacity(sessions);
        for i in 0..sessions {
            let mut c = Conn::login(imap, user, pw)?;
            c.cmd(&format!("SELECT INBOX.hxidle{}", i % folders))?;
            c.send(b"i IDLE\r\n")?;
            let mut cont = String::new();
            c.r.read_line(&mut cont)?;
            if !cont.starts_with('+') {
                bail!("IDLE refused: {cont}");
            }
            v.push(c);
        }
        Ok(v)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = crate::rss_kib(pid)?;
    let cpu0 = cpu_time(pid)?;
    let quiet = Duration::from_secs(10);
    std::thread::sleep(quiet);
    let cpu1 = cpu_time(pid)?;
    // One delivery to folder 7: exactly its sessions must wake.
    let target = 7 % folders;
    let at = deliver(&maildir.join(format!(".hxidle{target}")), 0)?;
    let expected = (0..sessions).filter(|i| i % folders == target).count();
    let mut wake_all = Duration::ZERO;
    for (i, c) in conns.iter_mut().enumerate() {
        if i % folders == target {
            wait_exists(&mut c.r)?;
            wake_all = wake_all.max(at.elapsed());
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // Any other session that got a byte was woken for nothing.
    let mut spurious = 0;
    for (i, c) in conns.iter_mut().enumerate() {
        if i % folders == target {
            continue;
        }
        c.r.get_ref().set_nonblocking(true)?;
        let mut buf = [0u8; 256];
        let got =
            !c.r.buffer().is_empty() || matches!(c.r.get_mut().read(&mut buf), Ok(n) if n > 0);
        if got {
            spurious += 1;
        }
    }
    Ok(IdleFigures {
        sessions,
        folders,
        setup,
        cpu_ms_per_s: (cpu1.saturating_sub(cpu0)).as_secs_f64() * 1000.0 / quiet.as_secs_f64(),
        kib_per_session: rss_after.saturating_sub(rss_before) as f64 / sessions as f64,
        expected,
        spurious,
        wake_all,
    })
}

//! `tern-bench`: measures tern and Dovecot side by side on copies of the same
//! Maildir, in one run, and prints the figures and the ratios.
//!
//! It is a program, not a test: timings never decide pass or fail. The
//! driver script `bench/run.sh` prepares both servers; see docs/BENCHMARKS.md.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

mod content;
mod login;
mod push;
mod shared;
mod stress;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// SELECT, FETCH, the concurrent mix, idle memory.
    Imap,
    /// POP3 start, IDLE latency, many idle sessions.
    Push,
    /// FETCH of structure and headers, SEARCH, SORT, THREAD.
    Content,
    /// Many sessions on one folder: each change reaching every session.
    Shared,
    /// Logins per second and their latency, many accounts.
    Login,
    /// Persistent sessions on a few mailboxes, each a busy client in a loop.
    Stress,
    /// The concurrent mix alone, the two servers alternated `--reps`
    /// times (for two routes to one backend, whose difference is smaller
    /// than one run's noise).
    Mix,
}

#[derive(Parser, Debug)]
#[command(about = "IMAP benchmark: tern against Dovecot")]
struct Args {
    /// tern's IMAP address.
    #[arg(long)]
    tern: SocketAddr,
    /// Dovecot's IMAP address.
    #[arg(long)]
    dovecot: SocketAddr,
    /// PID of the tern process (for memory figures).
    #[arg(long)]
    tern_pid: u32,
    /// User and password (the same on both servers).
    #[arg(long, default_value = "alice")]
    user: String,
    #[arg(long, default_value = "secret")]
    password: String,
    /// Clients in the concurrent mix.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Rounds per client in the concurrent mix.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Idle logged-in connections opened to tern for the memory figure.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// The same for Dovecot, whose default `mail_max_userip_connections` is 10.
    #[arg(long, default_value_t = 9)]
    dovecot_idle: usize,
    /// Repetitions of the warm measurements (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Imap)]
    mode: Mode,
    /// tern's POP3 address (push mode).
    #[arg(long)]
    tern_pop3: Option<SocketAddr>,
    /// Dovecot's POP3 address (push mode).
    #[arg(long)]
    dovecot_pop3: Option<SocketAddr>,
    /// tern's copy of the Maildir (push mode delivers into it).
    #[arg(long)]
    tern_maildir: Option<std::path::PathBuf>,
    /// Dovecot's copy of the Maildir.
    #[arg(long)]
    dovecot_maildir: Option<std::path::PathBuf>,
    /// Deliveries timed for the IDLE latency.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Idle sessions opened to tern (push mode).
    #[arg(long, default_value_t = 10_000)]
    idle_sessions: usize,
    /// Folders they idle on.
    #[arg(long, default_value_t = 1000)]
    idle_folders: usize,
    /// Sessions on one folder (shared mode).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Rounds of changes in shared mode.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Accounts `u0..` in both passwd-files (login mode).
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Seconds each login storm lasts (login mode); seconds of the run
    /// (stress mode).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Mailboxes, one per account `s0..` (stress mode).
    #[arg(long, default_value_t = 5)]
    mailboxes: usize,
    /// Sessions on each mailbox (stress mode).
    #[arg(long, default_value_t = 10)]
    per_box: usize,
    /// Seconds per throughput interval (stress mode).
    #[arg(long, default_value_t = 10)]
    interval: u64,
}

/// A minimal blocking IMAP client, one file descriptor per connection (the
/// many-idle-sessions figure opens 10,000 of them).
struct Conn {
    r: BufReader<TcpStream>,
    n: u32,
}

impl Conn {
    /// Writes raw bytes.
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.r.get_ref().write_all(bytes)
    }

    fn open(addr: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        Conn::over(s)
    }

    /// Connects from a chosen local address (another loopback address, so
    /// that a server's per-address limit is not what is measured).
    fn open_from(addr: SocketAddr, local: SocketAddr) -> Result<Conn> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        sock.bind(&local.into())
            .with_context(|| format!("bind {local}"))?;
        sock.connect(&addr.into())
            .with_context(|| format!("connect {addr} from {local}"))?;
        Conn::over(sock.into())
    }

    fn over(s: TcpStream) -> Result<Conn> {
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        s.set_nodelay(true)?;
        let mut c = Conn {
            r: BufReader::with_capacity(64 * 1024, s),
            n: 0,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting)?;
        Ok(c)
    }

    /// Sends a command and reads to its tagged answer; returns the bytes read.
    fn cmd(&mut self, text: &str) -> Result<usize> {
        self.n += 1;
        let tag = format!("b{}", self.n);
        self.send(format!("{tag} {text}\r\n").as_bytes())?;
        self.read_to(&tag)
    }

    /// Sends a command and returns the text of its answer (literals left
    /// out).
    fn cmd_text(&mut self, text: &str) -> Result<String> {
        self.n += 1;
        let tag = format!("b{}", self.n);
        self.send(format!("{tag} {text}\r\n").as_bytes())?;
        let mut out = String::new();
        self.read_into(&tag, Some(&mut out))?;
        Ok(out)
    }

    fn read_to(&mut self, tag: &str) -> Result<usize> {
        self.read_into(tag, None)
    }

    fn read_into(&mut self, tag: &str, mut text: Option<&mut String>) -> Result<usize> {
        let mut total = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.r.read_until(b'\n', &mut line)?;
            if n == 0 {
                bail!("connection closed");
            }
            total += n;
            if let Some(t) = text.as_deref_mut() {
                t.push_str(&String::from_utf8_lossy(&line));
            }
            // Skip literals inside the read buffer, without copying them:
            // the client must cost as little as it can, or it, not the
            // server, sets the pace of large FETCHes.
            if let Some(lit) = literal_len(&line) {
                let mut left = lit;
                while left > 0 {
                    let k = self.r.fill_buf()?.len().min(left);
                    if k == 0 {
                        bail!("connection closed in a literal");
                    }
                    self.r.consume(k);
                    left -= k;
                    total += k;
                }
                continue;
            }
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                if !line[tag.len() + 1..].starts_with(b"OK") {
                    bail!("{}", String::from_utf8_lossy(&line).trim_end());
                }
                return Ok(total);
            }
        }
    }

    fn login(addr: SocketAddr, user: &str, pw: &str) -> Result<Conn> {
        let mut c = Conn::open(addr)?;
        c.cmd(&format!("LOGIN {user} {pw}"))?;
        Ok(c)
    }

    /// APPENDs to INBOX and returns the UID from APPENDUID.
    fn append(&mut self, msg: &[u8]) -> Result<u32> {
        self.append_to("INBOX", msg)
    }

    /// APPENDs to `folder` and returns the UID from APPENDUID.
    fn append_to(&mut self, folder: &str, msg: &[u8]) -> Result<u32> {
        self.n += 1;
        let tag = format!("b{}", self.n);
        self.send(format!("{tag} APPEND {folder} {{{}}}\r\n", msg.len()).as_bytes())?;
        let mut cont = String::new();
        self.r.read_line(&mut cont)?;
        if !cont.starts_with('+') {
            bail!("APPEND refused: {cont}");
        }
        self.send(msg)?;
        self.send(b"\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            if line.starts_with(&format!("{tag} ")) {
                break;
            }
        }
        let uid = line
            .split("APPENDUID ")
            .nth(1)
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|u| {
                u.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            });
        uid.with_context(|| format!("no APPENDUID in {line:?}"))
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\r\n")?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|b| *b == b'{')?;
    std::str::from_utf8(&l[open + 1..]).ok()?.parse().ok()
}

/// Sequential APPENDs timed one by one.
const APPENDS: usize = 200;

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed(), v))
}

fn login_figures(args: &Args) -> Result<()> {
    let servers = [("tern", args.tern), ("Dovecot", args.dovecot)];
    let mut first = Vec::new();
    for (name, addr) in servers {
        let d = login::first_login(addr, args.accounts)?;
        eprintln!("login: {name} first login {d:?}");
        first.push(d);
    }
    // bench/run.sh hashes the passwords with this scheme.
    let scheme = std::env::var("TERN_LOGIN_SCHEME").unwrap_or_else(|_| "PLAIN".to_owned());
    println!(
        "Logins, {} accounts ({{{scheme}}}), {} s per storm",
        args.accounts, args.seconds
    );
    println!();
    println!("| figure | tern | Dovecot | Dovecot / tern |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| first login after start | {:.1} ms | {:.1} ms | {:.2} |",
        ms(first[0]),
        ms(first[1]),
        ms(first[1]) / ms(first[0]).max(0.001)
    );
    for clients in [20usize, 100] {
        let t = login::storm(args.tern, args.accounts, clients, args.seconds);
        let d = login::storm(args.dovecot, args.accounts, clients, args.seconds);
        println!(
            "| logins/s, {clients} clients | {:.0} | {:.0} | {:.2} (tern {:.1}x) |",
            t.per_sec,
            d.per_sec,
            d.per_sec / t.per_sec.max(0.001),
            t.per_sec / d.per_sec.max(0.001)
        );
        println!(
            "| p50 / p99 login, {clients} clients | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} / {:.2} |",
            ms(t.p50),
            ms(t.p99),
            ms(d.p50),
            ms(d.p99),
            ms(d.p50) / ms(t.p50).max(0.001),
            ms(d.p99) / ms(t.p99).max(0.001)
        );
        if t.failed + d.failed > 0 {
            println!(
                "| failed logins, {clients} clients | {} | {} | |",
                t.failed, d.failed
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Figures {
    cold_select: Duration,
    warm_select: Duration,
    fetch_uid_flags: Duration,
    mix: Duration,
    append: Duration,
    idle_kib: f64,
}

fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("VmRSS:") {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    bail!("no VmRSS for {pid}")
}

/// Total RSS of every process whose name is in `names`.
fn rss_of_named(names: &[&str]) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if names.contains(&comm.trim()) {
            total += rss_kib(pid).unwrap_or(0);
        }
    }
    Ok(total)
}

fn measure(
    addr: SocketAddr,
    args: &Args,
    idle_count: usize,
    memory: &dyn Fn() -> Result<u64>,
) -> Result<Figures> {
    let (u, p) = (args.user.as_str(), args.password.as_str());
    // Cold: the very first SELECT of the folder (no UID list or index yet).
    let mut c = Conn::login(addr, u, p)?;
    let (cold_select, _) = time(|| c.cmd("SELECT INBOX"))?;
    c.cmd("LOGOUT")?;
    // Idle logged-in connections, early, on a fresh server: memory freed by
    // later phases would otherwise be reused and hide their cost. They are
    // opened after the cold SELECT, so that closing them cannot slow it.
    let before = memory()?;
    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(Conn::login(addr, u, p)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = memory()?;
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    let mut warm = Vec::new();
    let mut fetch = Vec::new();
    for _ in 0..args.reps {
        let mut c = Conn::login(addr, u, p)?;
        warm.push(time(|| c.cmd("SELECT INBOX"))?.0);
        fetch.push(time(|| c.cmd("FETCH 1:* (UID FLAGS)"))?.0);
        c.cmd("LOGOUT")?;
    }
    // Sequential APPENDs of a 4 KiB message to a new folder: each is
    // acknowledged only once durable (file, directory, UID list).
    let mut c = Conn::login(addr, u, p)?;
    let folder = format!("INBOX.bench-append-{}", std::process::id());
    c.cmd(&format!("CREATE {folder}"))?;
    let mut big = b"From: bench@example.org\r\nSubject: append\r\n\r\n".to_vec();
    while big.len() < 4096 {
        big.extend_from_slice(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n",
        );
    }
    let mut appends = Vec::with_capacity(APPENDS);
    for _ in 0..APPENDS {
        appends.push(time(|| c.append_to(&folder, &big))?.0);
    }
    c.cmd(&format!("DELETE {folder}"))?;
    c.cmd("LOGOUT")?;
    let mix = concurrent_mix(addr, u, p, args.clients, args.rounds)?;
    Ok(Figures {
        cold_select,
        warm_select: median(warm),
        fetch_uid_flags: median(fetch),
        mix,
        append: median(appends),
        idle_kib: (after.saturating_sub(before)) as f64 / idle_count.max(1) as f64,
    })
}

/// The concurrent mix: `clients` threads, each `rounds` sessions of LOGIN,
/// SELECT, FETCH, APPEND, STOREs, EXPUNGE, LOGOUT; the time for all of them.
fn concurrent_mix(
    addr: SocketAddr,
    u: &str,
    p: &str,
    clients: usize,
    rounds: usize,
) -> Result<Duration> {
    let msg =
        b"From: bench@example.org\r\nTo: alice@example.org\r\nSubject: bench\r\n\r\nhello\r\n"
            .to_vec();
    let (mix, _) = time(|| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let msg = msg.clone();
                let (u, p) = (u.to_owned(), p.to_owned());
                std::thread::spawn(move || -> Result<()> {
                    for _ in 0..rounds {
                        let mut c = Conn::login(addr, &u, &p)?;
                        c.cmd("SELECT INBOX")?;
                        c.cmd("FETCH 1:20 (UID FLAGS ENVELOPE)")?;
                        let uid = c.append(&msg)?;
                        c.cmd("STORE 1:5 +FLAGS (\\Flagged)")?;
                        c.cmd("STORE 1:5 -FLAGS (\\Flagged)")?;
                        c.cmd(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
                        c.cmd(&format!("UID EXPUNGE {uid}"))?;
                        c.cmd("LOGOUT")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(mix)
}

/// The concurrent mix against each server in turn, `reps` pairs, the
/// order swapped every pair (so neither always runs on the other's
/// leftovers); each pair's ratio and the median ratio.
fn mix_figures(args: &Args) -> Result<()> {
    let (u, p) = (args.user.as_str(), args.password.as_str());
    let (c, r) = (args.clients, args.rounds);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // One mix each first, unmeasured: caches, pools, connections.
    concurrent_mix(args.tern, u, p, c, 2)?;
    concurrent_mix(args.dovecot, u, p, c, 2)?;
    println!("| pair | first server, ms | second server, ms | first/second |");
    println!("| --- | ---: | ---: | ---: |");
    let mut ratios = Vec::with_capacity(args.reps);
    for i in 0..args.reps.max(1) {
        let (t, d) = if i % 2 == 0 {
            let t = concurrent_mix(args.tern, u, p, c, r)?;
            (t, concurrent_mix(args.dovecot, u, p, c, r)?)
        } else {
            let d = concurrent_mix(args.dovecot, u, p, c, r)?;
            (concurrent_mix(args.tern, u, p, c, r)?, d)
        };
        let ratio = ms(t) / ms(d);
        ratios.push(ratio);
        println!("| {} | {:.1} | {:.1} | {ratio:.3} |", i + 1, ms(t), ms(d));
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "\nmedian first/second: {median:.3} of the time, so the first's throughput is {:.1}% of the second's; {c} clients x {r} rounds; first: --tern, second: --dovecot",
        100.0 / median
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Imap => imap_figures(&args),
        Mode::Push => push_figures(&args),
        Mode::Content => content_figures(&args),
        Mode::Shared => shared_figures(&args),
        Mode::Login => login_figures(&args),
        Mode::Stress => stress_figures(&args),
        Mode::Mix => mix_figures(&args),
    }
}

fn stress_figures(args: &Args) -> Result<()> {
    let interval = Duration::from_secs(args.interval.max(1));
    let (m, s, secs) = (args.mailboxes, args.per_box, args.seconds);
    let t = stress::measure(args.tern, m, s, secs, interval)?;
    let d = stress::measure(args.dovecot, m, s, secs, interval)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| figure | tern | Dovecot | tern/Dovecot |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| operations per second | {:.0} | {:.0} | {:.2} |",
        t.ops_per_s,
        d.ops_per_s,
        t.ops_per_s / d.ops_per_s
    );
    let (tf, df) = (first_last(&t.intervals), first_last(&d.intervals));
    println!(
        "| ops/s, first interval / last interval | {:.0} / {:.0} | {:.0} / {:.0} | |",
        tf.0, tf.1, df.0, df.1
    );
    for (i, name) in stress::COMMANDS.iter().enumerate() {
        let (a, b) = (t.latency[i], d.latency[i]);
        println!(
            "| {name} latency p50 / p95, ms | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
            ms(a.0),
            ms(a.1),
            ms(b.0),
            ms(b.1),
            ms(a.0) / ms(b.0)
        );
    }
    println!(
        "| commands not answered OK | {} | {} | |",
        t.refused, d.refused
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\ntern ops/s per {}-s interval: {}",
        interval.as_secs(),
        fmt(&t.intervals)
    );
    println!(
        "Dovecot ops/s per {}-s interval: {}",
        interval.as_secs(),
        fmt(&d.intervals)
    );
    println!(
        "\n{m} mailboxes x {s} persistent sessions, {secs} s each server; a loop of STATUS, LIST, SELECT, FETCH 10 (UID FLAGS RFC822.SIZE ENVELOPE), STORE a flag, APPEND, UID STORE \\Deleted, EXPUNGE"
    );
    Ok(())
}

fn first_last(v: &[f64]) -> (f64, f64) {
    (
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

fn shared_figures(args: &Args) -> Result<()> {
    let (u, p) = (args.user.as_str(), args.password.as_str());
    let (n, r) = (args.sessions, args.changes);
    let t = shared::measure(args.tern, u, p, n, r)?;
    let d = shared::measure(args.dovecot, u, p, n, r)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| figure | tern | Dovecot | tern/Dovecot |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, a, b) in [
        (
            "SELECT by every session, one after another, ms",
            t.selects,
            d.selects,
        ),
        ("round: a flag set, ms", t.flag_set, d.flag_set),
        ("round: a flag cleared, ms", t.flag_cleared, d.flag_cleared),
        ("round: an APPEND, ms", t.appended, d.appended),
        ("round: an EXPUNGE, ms", t.expunged, d.expunged),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} |",
            ms(a),
            ms(b),
            ms(a) / ms(b)
        );
    }
    println!(
        "| octets the readers received | {} | {} | |",
        t.bytes, d.bytes
    );
    println!(
        "\n{n} sessions SELECT INBOX; then {r} rounds of each change by one more session, after which every session sends NOOP at once (own thread); a round ends at the last answer; medians"
    );
    Ok(())
}

fn content_figures(args: &Args) -> Result<()> {
    let (u, p) = (args.user.as_str(), args.password.as_str());
    let reps = args.reps.clamp(1, 3);
    let (tc, tw) = content::measure(args.tern, u, p, reps)?;
    let (dc, dw) = content::measure(args.dovecot, u, p, reps)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| command | tern, ms | Dovecot, ms | tern/Dovecot |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| {} (cold) | {:.1} | {:.1} | {:.3} |",
        content::COMMANDS[0],
        ms(tc),
        ms(dc),
        ms(tc) / ms(dc)
    );
    for (i, cmd) in content::COMMANDS.iter().enumerate() {
        let (a, b) = (ms(tw[i]), ms(dw[i]));
        println!("| {cmd} (warm) | {a:.1} | {b:.1} | {:.3} |", a / b);
    }
    println!("\nwarm: median of {reps} runs on one connection after the cold run");
    let pid = args.tern_pid;
    let ts = content::stream_all(args.tern, u, p, || rss_kib(pid).unwrap_or(0))?;
    let ds = content::stream_all(args.dovecot, u, p, || rss_of_named(&["imap"]).unwrap_or(0))?;
    println!("\n| FETCH 1:* (BODY.PEEK[]) | tern | Dovecot (all imap processes) |");
    println!("| --- | ---: | ---: |");
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| octets received, MB | {:.1} | {:.1} |",
        ts.bytes as f64 / 1e6,
        ds.bytes as f64 / 1e6
    );
    println!("| time, ms | {:.0} | {:.0} |", ms(ts.time), ms(ds.time));
    println!(
        "| resident memory before, MiB | {:.1} | {:.1} |",
        mib(ts.rss_before_kib),
        mib(ds.rss_before_kib)
    );
    println!(
        "| resident memory at the peak, MiB | {:.1} | {:.1} |",
        mib(ts.rss_peak_kib),
        mib(ds.rss_peak_kib)
    );
    Ok(())
}

fn push_figures(args: &Args) -> Result<()> {
    let need =
        |v: &Option<SocketAddr>, what: &str| v.with_context(|| format!("push mode needs --{what}"));
    let (tp, dp) = (
        need(&args.tern_pop3, "tern-pop3")?,
        need(&args.dovecot_pop3, "dovecot-pop3")?,
    );
    let tm = args
        .tern_maildir
        .as_deref()
        .context("push mode needs --tern-maildir")?;
    let dm = args
        .dovecot_maildir
        .as_deref()
        .context("push mode needs --dovecot-maildir")?;
    let (u, p) = (args.user.as_str(), args.password.as_str());
    let t = push::measure(args.tern, tp, tm, u, p, args.reps, args.samples)?;
    let d = push::measure(args.dovecot, dp, dm, u, p, args.reps, args.samples)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| figure | tern | Dovecot | tern/Dovecot |");
    println!("| --- | ---: | ---: | ---: |");
    let rows = [
        (
            "POP3 start (login, STAT, UIDL, QUIT), first, ms",
            ms(t.pop3_cold),
            ms(d.pop3_cold),
        ),
        ("POP3 start again, ms", ms(t.pop3_warm), ms(d.pop3_warm)),
        (
            "delivery to EXISTS in IDLE, p50, ms",
            ms(t.latency_p50),
            ms(d.latency_p50),
        ),
        (
            "delivery to EXISTS in IDLE, p99, ms",
            ms(t.latency_p99),
            ms(d.latency_p99),
        ),
        (
            "delivery to EXISTS in IDLE, max, ms",
            ms(t.latency_max),
            ms(d.latency_max),
        ),
    ];
    for (name, a, b) in rows {
        println!("| {name} | {a:.2} | {b:.2} | {:.3} |", a / b);
    }
    println!(
        "\nIDLE latency: {} deliveries (write to tmp/, rename into new/) 20 ms apart, from the rename to the `* n EXISTS` line",
        args.samples
    );
    if args.idle_sessions > 0 {
        let f = push::many_idle(
            args.tern,
            args.tern_pid,
            tm,
            u,
            p,
            args.idle_sessions,
            args.idle_folders,
        )?;
        println!(
            "\ntern, {} sessions idling on {} folders: opened (LOGIN, SELECT, IDLE) in {:.1} s; {:.1} KiB each; server CPU while nothing changes {:.2} ms/s; one delivery woke its {} sessions within {:.1} ms and {} others",
            f.sessions,
            f.folders,
            f.setup.as_secs_f64(),
            f.kib_per_session,
            f.cpu_ms_per_s,
            f.expected,
            ms(f.wake_all),
            f.spurious
        );
    }
    Ok(())
}

fn imap_figures(args: &Args) -> Result<()> {
    let tern_pid = args.tern_pid;
    let t = measure(args.tern, args, args.idle, &|| rss_kib(tern_pid))?;
    let d = measure(args.dovecot, args, args.dovecot_idle, &|| {
        rss_of_named(&[
            "imap",
            "imap-login",
            "dovecot",
            "auth",
            "anvil",
            "log",
            "config",
        ])
    })?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| figure | tern | Dovecot | tern/Dovecot |");
    println!("| --- | ---: | ---: | ---: |");
    let rows = [
        (
            "first SELECT (cold), ms",
            ms(t.cold_select),
            ms(d.cold_select),
        ),
        (
            "SELECT again (warm), ms",
            ms(t.warm_select),
            ms(d.warm_select),
        ),
        (
            "FETCH 1:* (UID FLAGS), ms",
            ms(t.fetch_uid_flags),
            ms(d.fetch_uid_flags),
        ),
        ("concurrent mix, ms", ms(t.mix), ms(d.mix)),
        (
            "APPEND of 4 KiB to a new folder, median of 200, ms",
            ms(t.append),
            ms(d.append),
        ),
        (
            "memory per idle logged-in connection, KiB",
            t.idle_kib,
            d.idle_kib,
        ),
    ];
    for (name, a, b) in rows {
        println!("| {name} | {a:.1} | {b:.1} | {:.2} |", a / b);
    }
    println!(
        "\nconcurrent mix: {} clients x {} rounds of LOGIN, SELECT, FETCH 1:20 (UID FLAGS ENVELOPE), APPEND, STORE +FLAGS, STORE -FLAGS, UID STORE \\Deleted, UID EXPUNGE, LOGOUT; memory from {} idle connections to tern, {} to Dovecot (its per-user-and-IP limit)",
        args.clients, args.rounds, args.idle, args.dovecot_idle
    );
    Ok(())
}

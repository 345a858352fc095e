//! The login proxy across hosts. Network namespaces joined by veth links
//! to one bridge make a proxy host, two backend hosts and a database host
//! on this machine (iproute2, as root, as CI runs); the test's thread joins
//! a client host's namespace on the same network, so nothing of the test
//! network touches the machine's own. Every tern host runs one and the same
//! configuration file, each in mount and UTS namespaces of its own (its
//! own disk under one path, its own hostname); the accounts are in a
//! PostgreSQL on the database host, each with a `mailhost` naming a
//! backend by address, by name, by pool, or the proxy host itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::lmtp::Lmtp;

/// The test network's first three octets (private, and only inside the
/// namespaces).
const NET: &str = "10.213.77";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The hosts: a switch namespace holding a bridge, one namespace per host
/// with a veth link to it, and the client's, which the test's thread
/// joins. Everything is removed when dropped.
struct Lan {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lan {
    /// The network, with the calling thread moved into the client host's
    /// namespace (`NET.10` and `NET.20`): every socket it makes from then
    /// on is on the test network (a thread's network namespace is its own;
    /// the other tests' threads stay where they are).
    fn new() -> Lan {
        assert!(
            is_root(),
            "the multi-host test needs root for its network namespaces (CI runs as root)"
        );
        let mut lan = Lan {
            prefix: format!("tmh{}", std::process::id()),
            namespaces: Vec::new(),
        };
        let sw = lan.ns("sw");
        ip(&["netns", "add", &sw]);
        lan.namespaces.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let client = lan.link_host("client");
        for a in ["10", "20"] {
            ip(&[
                "-n",
                &client,
                "addr",
                "add",
                &format!("{NET}.{a}/24"),
                "dev",
                "eth0",
            ]);
        }
        ip(&["-n", &client, "link", "set", "eth0", "up"]);
        let f = std::fs::File::open(format!("/run/netns/{client}")).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("joining the client host's network namespace");
        lan
    }

    /// A namespace `name` with a veth link `eth0` to the bridge (not yet
    /// up, no address) and its loopback up: its name.
    fn link_host(&mut self, name: &str) -> String {
        let (ns, sw) = (self.ns(name), self.ns("sw"));
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let peer = format!("p{name}");
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
            &sw,
        ]);
        ip(&["-n", &sw, "link", "set", &peer, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// A host `name` at `NET.last`, its `/etc/hosts` naming every host.
    fn host(&mut self, name: &str, last: u8) {
        let ns = self.link_host(name);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{NET}.{last}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        // `ip netns exec` puts /etc/netns/NS/hosts over /etc/hosts.
        let etc = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("hosts"),
            format!("127.0.0.1 localhost\n{NET}.2 px\n{NET}.11 b1\n{NET}.12 b2\n{NET}.5 db\n"),
        )
        .unwrap();
    }

    /// `ip netns exec NS` + `args`.
    fn exec(&self, host: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).args(args);
        c
    }

    /// The host's link goes down: it vanishes from the network (its
    /// packets are dropped, nothing is refused).
    fn unplug(&self, host: &str) {
        ip(&["-n", &self.ns(host), "link", "set", "eth0", "down"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
    }
}

/// The PostgreSQL of the database host, stopped when dropped.
struct Postgres<'a> {
    lan: &'a Lan,
    dir: PathBuf,
}

const PG_PORT: &str = "5432";

impl<'a> Postgres<'a> {
    fn start(lan: &'a Lan, dir: PathBuf) -> Postgres<'a> {
        let pg = Postgres { lan, dir };
        let listen = format!("PG_LISTEN={NET}.5");
        let st = pg.db_sh(&[&listen], "start").status().unwrap();
        assert!(
            st.success(),
            "PostgreSQL did not start on the database host"
        );
        pg
    }

    /// `scripts/db.sh postgres ACTION DIR [PORT]` on the database host,
    /// with the environment `env` (`NAME=value`).
    fn db_sh(&self, env: &[&str], action: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/db.sh");
        let dir = self.dir.to_str().unwrap();
        let mut args = vec!["env"];
        args.extend_from_slice(env);
        args.extend(["bash", script.to_str().unwrap(), "postgres", action, dir]);
        if action != "stop" {
            args.push(PG_PORT);
        }
        self.lan.exec("db", &args)
    }

    fn sql(&self, sql: &str) {
        let mut child = self
            .db_sh(&[], "sql")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{sql}");
    }
}

impl Drop for Postgres<'_> {
    fn drop(&mut self) {
        let _ = self.db_sh(&[], "stop").output();
    }
}

/// One host's `tern serve`, killed when dropped.
struct Host {
    name: &'static str,
    child: Child,
    /// The host's own disk, seen from here (its `/…/host` inside).
    disk: PathBuf,
    log: PathBuf,
}

impl Host {
    /// Starts tern on `name` with the shared `config`: in its network
    /// namespace, with its disk `root/disk-NAME` mounted on `root/host`
    /// and its hostname `name`.
    fn start(lan: &Lan, root: &Path, name: &'static str, config: &Path) -> Host {
        let disk = root.join(format!("disk-{name}"));
        std::fs::create_dir_all(&disk).unwrap();
        let log = root.join(format!("{name}.log"));
        let mut child = lan
            .exec(
                name,
                &[
                    "unshare",
                    "--mount",
                    "--uts",
                    "--",
                    "sh",
                    "-c",
                    "hostname \"$1\" && mount --bind \"$2\" \"$3\" && exec \"$4\" serve --config \"$5\"",
                    "sh",
                    name,
                    disk.to_str().unwrap(),
                    root.join("host").to_str().unwrap(),
                    env!("CARGO_BIN_EXE_tern"),
                    config.to_str().unwrap(),
                ],
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("tern on {name} exited: {}", read(&log)))
                .unwrap();
            // The LMTP listener is bound last.
            if line.starts_with("tern: listening lmtp ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Host {
            name,
            child,
            disk,
            log,
        }
    }

    fn log(&self) -> String {
        read(&self.log)
    }

    /// How many messages `user`'s INBOX has on this host's disk.
    fn messages(&self, user: &str) -> usize {
        let md = self.disk.join("mail").join(user);
        ["cur", "new"]
            .iter()
            .filter_map(|d| std::fs::read_dir(md.join(d)).ok())
            .map(Iterator::count)
            .sum()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn at(last: u8, port: u16) -> SocketAddr {
    format!("{NET}.{last}:{port}").parse().unwrap()
}

/// A TCP connection to `to` from this host's address `NET.from`.
fn tcp_from(from: u8, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&at(from, 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(10))
        .unwrap();
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    t
}

/// A connection from `NET.from` to `to` once the server greets it: the
/// connections this address closed a moment ago may still count against
/// its per-address limit until the server has seen them close.
fn greeted_from(from: u8, to: SocketAddr) -> TcpStream {
    let t = Instant::now();
    let greeting: &[u8] = if to.port() == 24 { b"220 " } else { b"* OK" };
    loop {
        let tcp = tcp_from(from, to);
        let mut first = [0u8; 4];
        if tcp.peek(&mut first).is_ok_and(|n| n == 4) && first == greeting {
            return tcp;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never greeted at {to}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The configuration every host runs.
fn config(root: &Path) -> String {
    let r = root.display();
    format!(
        "[imap]\nlisten = [\"0.0.0.0:143\"]\ntls_listen = [\"0.0.0.0:993\"]\nhaproxy_listen = [\"0.0.0.0:1143\"]\n\
         [pop3]\nlisten = [\"0.0.0.0:110\"]\ntls_listen = [\"0.0.0.0:995\"]\nhaproxy_listen = [\"0.0.0.0:1110\"]\n\
         [lmtp]\nlisten = [\"0.0.0.0:24\"]\n\
         [tls]\ncert = \"{r}/cert.pem\"\nkey = \"{r}/key.pem\"\n\
         [auth]\nfailure_delay_ms = 1\nblock_after = 0\ncleartext = \"always\"\nlogin_trusted_networks = [\"{NET}.2\"]\n\
         [[auth.sql]]\nurl = \"postgres://tern:ternpw@{NET}.5:{PG_PORT}/mail\"\n\
         password_query = \"SELECT login AS user, pw AS password, mailhost FROM accounts WHERE login = :user\"\n\
         timeout_ms = 3000\n\
         [mail]\nallow_root = true\nmaildir = \"{r}/host/mail/{{user}}\"\n\
         [haproxy]\ntrusted_networks = [\"{NET}.2\"]\n\
         [limits]\nmax_connections_per_ip = 3\n\
         [proxy]\nimap_port = 1143\npop3_port = 1110\nsend_proxy_header = true\n\
         connect_timeout_ms = 2000\ndown_secs = 60\ncontrol_socket = \"{r}/host/control.sock\"\n\
         cleartext_networks = [\"{NET}.0/24\"]\n\
         [proxy.pools.main]\nservers = [\"{NET}.11\", \"{NET}.12\"]\n"
    )
}

/// The pool's users.
const POOLED: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];

/// The line of a SELECT's answer giving how many messages there are.
fn exists(c: &mut Client) -> u32 {
    let r = c.cmd("SELECT INBOX");
    assert!(r.ok(), "{r:?}");
    r.lines
        .iter()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS"))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn login_over(tcp: TcpStream, tls: bool, user: &str) -> Client {
    let mut c = if tls {
        Client::tls_over(tcp)
    } else {
        Client::plain_over(tcp)
    };
    let r = c.cmd(&format!("LOGIN {user} {user}pw"));
    assert!(r.ok(), "{user}: {r:?}");
    c
}

/// Waits in IDLE on `c` for an EXISTS line; when it came.
fn exists_in_idle(c: &mut Client) -> Instant {
    let line = c.read_line();
    let t = Instant::now();
    assert!(line.ends_with("EXISTS"), "{line}");
    t
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_proxy_host_and_two_backends_with_one_configuration() {
    let mut lan = Lan::new();
    for (name, last) in [("px", 2), ("b1", 11), ("b2", 12), ("db", 5)] {
        lan.host(name, last);
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join("host")).unwrap();
    // One certificate for every host (implicit TLS and STARTTLS on the
    // client leg).
    tern_server::tls::generate_self_signed(
        &["px".into(), "b1".into(), "b2".into()],
        &r.join("cert.pem"),
        &r.join("key.pem"),
    )
    .unwrap();
    let conf = r.join("tern.toml");
    std::fs::write(&conf, config(r)).unwrap();
    let db_dir = r.join("db");
    let pg = Postgres::start(&lan, db_dir);
    let mut rows = format!(
        "CREATE TABLE accounts (login VARCHAR(200) PRIMARY KEY, pw VARCHAR(300), mailhost VARCHAR(300));\n\
         INSERT INTO accounts VALUES ('ann', '{{PLAIN}}annpw', '{NET}.11');\n\
         INSERT INTO accounts VALUES ('ben', '{{PLAIN}}benpw', 'b2');\n\
         INSERT INTO accounts VALUES ('dan', '{{PLAIN}}danpw', '{NET}.2');\n"
    );
    for u in POOLED {
        rows.push_str(&format!(
            "INSERT INTO accounts VALUES ('{u}', '{{PLAIN}}{u}pw', 'pool:main');\n"
        ));
    }
    pg.sql(&rows);
    let px = Host::start(&lan, r, "px", &conf);
    let b1 = Host::start(&lan, r, "b1", &conf);
    let mut b2 = Host::start(&lan, r, "b2", &conf);
    let (px_imap, px_imaps, px_pop3, px_pop3s, px_lmtp) =
        (at(2, 143), at(2, 993), at(2, 110), at(2, 995), at(2, 24));

    // Each user reaches the mailbox its mailhost names, over IMAP in the
    // clear, with implicit TLS and with STARTTLS: ann on b1 (by address),
    // ben on b2 (by name), dan on the proxy host itself (its address).
    let msg = message("routed", "x");
    for (user, tls) in [("ann", false), ("ben", true), ("dan", false)] {
        let mut c = login_over(
            tcp_from(10, if tls { px_imaps } else { px_imap }),
            tls,
            user,
        );
        assert!(c.append("INBOX", "()", &msg).ok(), "{user}");
        assert!(c.cmd("LOGOUT").ok());
    }
    let (_, mut st) = Client::starttls_from_addr(px_imap);
    assert!(st.cmd("LOGIN ann annpw").ok());
    assert_eq!(exists(&mut st), 1, "ann over STARTTLS");
    drop(st);
    for (host, user, n) in [
        (&b1, "ann", 1),
        (&b2, "ann", 0),
        (&px, "ann", 0),
        (&b2, "ben", 1),
        (&b1, "ben", 0),
        (&px, "dan", 1),
        (&b1, "dan", 0),
    ] {
        assert_eq!(host.messages(user), n, "{user} on {}", host.name);
    }
    // POP3 in the clear and with implicit TLS, through the proxy.
    for (mut p, user) in [(Pop::plain(px_pop3), "ann"), (Pop::tls(px_pop3s), "ben")] {
        assert!(p.login(user, &format!("{user}pw")).starts_with("+OK"));
        assert!(p.cmd("STAT").starts_with("+OK 1 "), "{user}");
        assert!(p.cmd("QUIT").starts_with("+OK"));
    }
    // The backends saw the client's address (the PROXY header from the
    // proxy host, the one address they trust), not the proxy's.
    for (host, user) in [(&b1, "ann"), (&b2, "ben")] {
        let log = host.log();
        assert!(
            log.lines().any(|l| l.contains(&format!("user=\"{user}\""))
                && l.contains(&format!("peer={NET}.10:"))),
            "{}: {log}",
            host.name
        );
        assert!(
            !log.lines().any(|l| l.contains(&format!("user=\"{user}\""))
                && l.contains(&format!("peer={NET}.2:"))),
            "{} counted the proxy as the client: {log}",
            host.name
        );
    }

    // The backends' per-address limits count the client, not the proxy:
    // three of ann's sessions from .20 reach b1 through the proxy, after
    // which b1 refuses a connection from .20 made to it directly; and a
    // fourth session through the proxy, from .10, still reaches b1 (four
    // from the proxy's address would be over b1's limit of 3).
    let mut held: Vec<Client> = (0..3)
        .map(|_| login_over(tcp_from(20, px_imap), false, "ann"))
        .collect();
    let refusal = Client::plain_over(tcp_from(20, at(11, 143))).greeting;
    assert!(
        refusal.starts_with("* BYE") && refusal.contains("Too many connections"),
        "b1 did not count the proxied sessions as the client's: {refusal}"
    );
    held.push(login_over(greeted_from(10, px_imap), false, "ann"));
    for c in &mut held {
        assert!(c.cmd("NOOP").ok());
    }
    for mut c in held.drain(..) {
        assert!(c.cmd("LOGOUT").ok());
        let _ = c.read_to_close();
    }

    // A delivery through the proxy host's LMTP is written by b1, and an
    // IDLE session through the proxy sees it as soon as one on b1
    // directly (figures printed, not asserted).
    let mut proxied = login_over(greeted_from(10, px_imap), false, "ann");
    let mut local = login_over(greeted_from(10, at(11, 143)), false, "ann");
    let mut base = exists(&mut proxied);
    assert_eq!(exists(&mut local), base);
    // Latencies from the end of the data to the EXISTS, by where the
    // delivery went in (the proxy host's LMTP, relayed; b1's own) and
    // where the IDLE session is (on b1; through the proxy).
    let mut lat: [[Vec<Duration>; 2]; 2] = Default::default();
    for round in 0..20 {
        let (lmtp_at, relayed) = if round % 2 == 0 {
            (px_lmtp, 0)
        } else {
            (at(11, 24), 1)
        };
        for (c, tag) in [(&mut proxied, "p"), (&mut local, "l")] {
            c.send(format!("{tag}{round} IDLE\r\n").as_bytes());
            assert!(c.read_line().starts_with('+'));
        }
        let mut l = Lmtp::connect_to(greeted_from(20, lmtp_at));
        assert!(l.cmd("LHLO mx").starts_with("250"));
        assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
        assert_eq!(l.cmd("RCPT TO:<ann>"), "250 2.1.5 OK");
        assert!(l.cmd("DATA").starts_with("354"));
        l.send(format!("Subject: idle {round}\r\n\r\nx\r\n.\r\n").as_bytes());
        let sent = Instant::now();
        let answer = l.reply();
        assert!(answer.starts_with("250 2.0.0"), "{answer}");
        assert!(l.cmd("QUIT").starts_with("221"));
        let t_local = exists_in_idle(&mut local);
        let t_proxied = exists_in_idle(&mut proxied);
        lat[relayed][0].push(t_local.saturating_duration_since(sent));
        lat[relayed][1].push(t_proxied.saturating_duration_since(sent));
        for (c, tag) in [(&mut proxied, "p"), (&mut local, "l")] {
            c.send(b"DONE\r\n");
            assert!(c.read_until_tag(&format!("{tag}{round}")).ok());
        }
        base += 1;
    }
    assert_eq!(b1.messages("ann"), base as usize, "every delivery on b1");
    assert_eq!(px.messages("ann"), 0, "none written on the proxy host");
    let [[mut relayed_b1, mut relayed_proxied], [mut direct_b1, mut direct_proxied]] = lat;
    println!(
        "multihost: end of data to EXISTS, medians of 10: delivered through the proxy host: IDLE on b1 {:?}, through the proxy {:?}; delivered to b1: IDLE on b1 {:?}, through the proxy {:?}",
        median(&mut relayed_b1),
        median(&mut relayed_proxied),
        median(&mut direct_b1),
        median(&mut direct_proxied)
    );
    drop(local);

    // ann moves to b2 in the directory while two of her sessions are
    // open: her next login ends both (she is never on two servers at
    // once) and lands on b2, which serves her there.
    let mut second = login_over(greeted_from(10, px_imap), false, "ann");
    assert!(second.cmd("NOOP").ok());
    pg.sql("UPDATE accounts SET mailhost = 'b2' WHERE login = 'ann';");
    let mut moved = login_over(greeted_from(10, px_imap), false, "ann");
    for c in [&mut proxied, &mut second] {
        let bye = c.read_line();
        assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    }
    assert_eq!(exists(&mut moved), 0, "on b2 now");
    assert!(moved.append("INBOX", "()", &msg).ok());
    assert_eq!(b2.messages("ann"), 1);
    // `tern proxy move` sends her back to b1 while the directory still
    // says b2: her session on b2 ends, and b1 serves the login the proxy
    // relayed to it (the proxy's ID says it chose b1) instead of relaying
    // it on to b2 by its own directory.
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["proxy", "--socket"])
        .arg(px.disk.join("control.sock"))
        .args(["move", "ann", &format!("{NET}.11"), "--hold-secs", "1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK 1\n");
    let bye = moved.read_line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    let mut back = login_over(greeted_from(10, px_imap), false, "ann");
    assert_eq!(exists(&mut back), base, "on b1 again");
    drop(back);
    assert!(
        !b1.log().lines().any(|l| l.contains("login proxied")),
        "b1 relayed a login the proxy had routed to it: {}",
        b1.log()
    );

    // The pool's users are spread over both backends.
    let on_b2: Vec<&str> = POOLED
        .iter()
        .copied()
        .filter(|u| {
            let mut c = login_over(greeted_from(10, px_imap), false, u);
            assert!(c.append("INBOX", "()", &msg).ok());
            b2.messages(u) == 1
        })
        .collect();
    assert!(
        !on_b2.is_empty() && on_b2.len() < POOLED.len(),
        "the pool put everyone on one backend: {on_b2:?}"
    );

    // b2 vanishes from the network. Its users get UNAVAILABLE within the
    // connect timeout (2 s); the pool's users on it fail over to b1 in
    // the same login; b1's users are not affected.
    lan.unplug("b2");
    let t = Instant::now();
    let r = Client::plain_over(greeted_from(10, px_imap)).cmd("LOGIN ben benpw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    println!(
        "multihost: a vanished backend's user told UNAVAILABLE in {:?}",
        t.elapsed()
    );
    for u in &on_b2 {
        let mut c = login_over(greeted_from(10, px_imap), false, u);
        assert_eq!(
            exists(&mut c),
            0,
            "{u} is on b1 now (their mail stays on b2)"
        );
    }
    let mut c = Client::plain_over(greeted_from(10, px_imap));
    assert!(c.cmd("LOGIN c0 c0pw").ok());
    let mut d = login_over(greeted_from(10, px_imap), false, "dan");
    assert_eq!(exists(&mut d), 1, "dan, served on the proxy host");
    // The proxy and b1 never went down.
    let _ = b2.child.kill();
    for h in [&px, &b1] {
        let last = if h.name == "px" { 2 } else { 11 };
        let mut c = Client::plain_over(greeted_from(20, at(last, 143)));
        assert!(c.cmd("NOOP").ok(), "{}", h.name);
    }
}

//! `tern`: the IMAP server for Maildir mail stores, and its tools.
//!
//! - `tern serve [--config FILE]` runs the server (the embedded default when
//!   no file is given: data under `./tern-data/`).
//! - `tern imapd MAILDIR` speaks IMAP on stdin/stdout, pre-authenticated, as
//!   Courier's `imapd ./Maildir` does.
//! - `tern pw` hashes a password read from stdin for a passwd-file.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use tern_server::config::{
    Config, DEFAULT_IMAPS_LISTEN, DEFAULT_IMAP_LISTEN, DEFAULT_POP3S_LISTEN, DEFAULT_POP3_LISTEN,
};
use tern_server::folders::FolderRegistry;
use tern_server::imap::namespace::Namespace;
use tern_server::imap::{serve_connection, Services, SessionStart};
use tern_server::listener::{self, BoundListener, Protocol};
use tern_server::policy::Policy;
use tern_server::users::{User, UserDb};

/// Exit code for a bad configuration (sysexits EX_USAGE, as linkerd does).
mod import_courier;
mod migrate;
mod privileges;

const EXIT_CONFIG: i32 = 64;

#[derive(Parser, Debug)]
#[command(name = "tern", version, about = "IMAP server for Maildir mail stores")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Configuration file (TOML). Without it, the embedded default runs
        /// with its data under ./tern-data/.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// IMAP on stdin/stdout for one Maildir, already logged in (PREAUTH).
    Imapd {
        /// The Maildir (INBOX) to serve.
        maildir: PathBuf,
    },
    /// Write a self-signed certificate and key (cert.pem, key.pem) for a
    /// test or a first setup.
    Cert {
        /// Directory to write cert.pem and key.pem into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Host names the certificate is valid for.
        #[arg(long = "name", default_values_t = ["localhost".to_owned()])]
        names: Vec<String>,
    },
    /// What a switch from Courier-IMAP or Dovecot to tern keeps.
    Migrate {
        #[command(subcommand)]
        action: MigrateCmd,
    },
    /// Show or end the sessions a tern proxy relays (through its
    /// `proxy.control_socket`).
    Proxy {
        /// The proxy's control socket.
        #[arg(long)]
        socket: PathBuf,
        /// On every proxy of the pool (`proxy.peers`), not only this one.
        #[arg(long)]
        pool: bool,
        #[command(subcommand)]
        action: ProxyCmd,
    },
    /// Read another server's account configuration and print tern's.
    Import {
        #[command(subcommand)]
        from: ImportCmd,
    },
    /// Create a Maildir, a folder in it (-f) or its quota file (-q), as
    /// Courier's maildirmake does.
    Maildirmake {
        /// Maildir++ quota, e.g. 10000000S,1000C (bytes S, messages C).
        #[arg(short = 'q')]
        quota: Option<String>,
        /// Create this folder (e.g. Sent or Work.2024) inside DIR.
        #[arg(short = 'f')]
        folder: Option<String>,
        /// Check whether DIR's folder names (modified UTF-7, Courier-IMAP 4)
        /// convert to UTF-8 (Courier-IMAP 5), changing nothing.
        #[arg(long, conflicts_with_all = ["quota", "folder", "convutf8"])]
        checkutf8: bool,
        /// Convert DIR's folder names and subscriptions to UTF-8, once.
        #[arg(long, conflicts_with_all = ["quota", "folder"])]
        convutf8: bool,
        /// The Maildir.
        dir: PathBuf,
        /// With --checkutf8/--convutf8: SqWebMail's maildrop recipe (tern
        /// refuses to convert one that exists).
        mailfilter: Option<PathBuf>,
    },
    /// Deliver one message read from stdin into a user's Maildir (an MDA for
    /// Postfix, Exim, maildrop). Exit codes as sysexits: 0 delivered, 67
    /// unknown user, 75 temporary failure, 77 over quota.
    Deliver {
        /// Configuration to find users in (default: $TERN_CONFIG, else
        /// ./tern-data/tern.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The user to deliver to, as in the passwd-file.
        #[arg(
            long,
            short,
            conflicts_with = "maildir",
            required_unless_present = "maildir"
        )]
        user: Option<String>,
        /// A Maildir to deliver to directly (its maildirsize is the quota).
        #[arg(long, short)]
        maildir: Option<PathBuf>,
        /// Folder to deliver into (e.g. Spam or INBOX.Lists.rust); INBOX
        /// when it does not exist, unless --create is given.
        #[arg(long, short)]
        folder: Option<String>,
        /// Create the folder when it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Hash a password read from stdin, for a passwd-file.
    Pw {
        /// ARGON2ID (default), SHA512-CRYPT, SSHA512, SCRAM-SHA-256 or SCRAM-SHA-1
        /// (SCRAM keys: the account can log in by SCRAM and by password).
        #[arg(long, default_value = "ARGON2ID")]
        scheme: String,
    },
}

#[derive(Subcommand, Debug)]
enum ProxyCmd {
    /// One line per relayed session: user, backend, client, seconds.
    List,
    /// End the sessions of USER, or of every user of --host; each client
    /// is told to log in again.
    Kick {
        /// The account.
        user: Option<String>,
        /// A backend (as its mailhost or pool names it).
        #[arg(long)]
        host: Option<String>,
    },
    /// Move USER to HOST on this proxy: its new logins wait --hold-secs,
    /// its relayed sessions end now, and from then on it is served by HOST
    /// (over its mailhost, until `tern proxy unmove`; kept across restarts
    /// in proxy.moves_file). Change the directory too, then unmove. With
    /// --pool, on every proxy of the pool.
    Move {
        /// The account.
        user: String,
        /// Where it is served from now on (`host[:port]`, or this server's
        /// name to serve it here).
        host: String,
        /// How long new logins wait (at most 30).
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
    },
    /// End USER's move: its mailhost decides again (once the directory
    /// names the new server).
    Unmove {
        /// The account.
        user: String,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// courier-authlib's configuration directory (authdaemonrc,
    /// authmysqlrc, authpgsqlrc, authldaprc, userdb), e.g. /etc/courier:
    /// prints the equivalent [auth] section, with a comment for each
    /// setting that is not carried over.
    CourierAuthlib {
        /// The directory.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateCmd {
    /// For each Maildir (each DIR, or every Maildir found below it): whose
    /// files it holds, UIDs, keywords, subscriptions, POP3 UIDLs, folder
    /// names, and a verdict per client-visible item. Reads only. Exit 0 when
    /// everything is kept, 1 when something is not, 2 when no Maildir is found.
    Check {
        /// Print JSON (an array, one object per Maildir).
        #[arg(long)]
        json: bool,
        /// The tern configuration the switch will run with: verdicts say
        /// what it keeps, settings it has are not asked for again.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Maildirs, or directories holding them.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

fn init_logging(level: Option<&str>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| level.map(str::to_owned))
        .unwrap_or_else(|| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Serve { config } => serve(config),
        Cmd::Imapd { maildir } => imapd(maildir),
        Cmd::Pw { scheme } => pw(&scheme),
        Cmd::Migrate {
            action: MigrateCmd::Check { json, config, dirs },
        } => match config.map(|c| Config::load(&c)) {
            None => migrate::run_check(&dirs, json, None),
            Some(Ok(cfg)) => migrate::run_check(&dirs, json, Some(&migrate::Planned::of(&cfg))),
            Some(Err(e)) => {
                eprintln!("tern migrate check: {e}");
                3
            }
        },
        Cmd::Proxy {
            socket,
            pool,
            action,
        } => proxy_control(&socket, pool, action),
        Cmd::Import {
            from: ImportCmd::CourierAuthlib { dir },
        } => match import_courier::convert(&dir) {
            Ok(toml) => {
                print!("{toml}");
                0
            }
            Err(e) => {
                eprintln!("tern import courier-authlib: {e}");
                EXIT_CONFIG
            }
        },
        Cmd::Cert { out, names } => cert(&out, &names),
        Cmd::Deliver {
            config,
            user,
            maildir,
            folder,
            create,
        } => deliver(config, user, maildir, folder, create),
        Cmd::Maildirmake {
            checkutf8,
            convutf8,
            dir,
            mailfilter,
            ..
        } if checkutf8 || convutf8 => {
            let r = tern_maildir::convert_utf8::run(&dir, mailfilter.as_deref(), convutf8);
            for l in &r.out {
                println!("{l}");
            }
            for l in &r.err {
                eprintln!("{l}");
            }
            i32::from(r.failed)
        }
        Cmd::Maildirmake {
            quota,
            folder,
            dir,
            mailfilter: None,
            ..
        } => maildirmake(quota.as_deref(), folder.as_deref(), &dir),
        Cmd::Maildirmake { .. } => {
            eprintln!(
                "maildirmake: one Maildir only (a second path goes with --checkutf8/--convutf8)"
            );
            EXIT_CONFIG
        }
    };
    std::process::exit(code);
}

fn maildirmake(quota: Option<&str>, folder: Option<&str>, dir: &std::path::Path) -> i32 {
    use tern_maildir::{make, MaildirError};
    // The operator names the Maildir: it may be a link (its folders and
    // tmp/ never are).
    tern_maildir::dirs::allow_linked_roots(true);
    let fail = |what: &std::path::Path, e: MaildirError| {
        let text = match e {
            MaildirError::FolderExists => "File exists".to_owned(),
            MaildirError::NoSuchFolder => "not a Maildir".to_owned(),
            other => other.to_string(),
        };
        eprintln!("maildirmake: {}: {text}", what.display());
        1
    };
    if let Some(q) = quota {
        if !make::valid_quota(q) {
            eprintln!("maildirmake: invalid quota {q:?} (e.g. 10000000S,1000C)");
            return EXIT_CONFIG;
        }
    }
    if let Some(f) = folder {
        let name = match tern_maildir::FolderName::new(f) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("maildirmake: {f}: {e}");
                return EXIT_CONFIG;
            }
        };
        if let Err(e) = make::make_folder(dir, &name) {
            return fail(&dir.join(format!(".{name}")), e);
        }
    } else if quota.is_none() || !dir.join("cur").is_dir() {
        if let Err(e) = make::make_maildir(dir) {
            return fail(dir, e);
        }
    }
    if let Some(q) = quota {
        if let Err(e) = make::write_quota(dir, q) {
            return fail(dir, e);
        }
    }
    0
}

/// sysexits.h codes that MTAs act on.
mod sysexits {
    /// Command line misuse.
    pub const USAGE: i32 = 64;
    /// No such user: the MTA bounces.
    pub const NOUSER: i32 = 67;
    /// Temporary failure: the MTA retries.
    pub const TEMPFAIL: i32 = 75;
    /// Over quota, as Courier's deliverquota: the MTA bounces.
    pub const OVERQUOTA: i32 = 77;
}

fn deliver(
    config: Option<PathBuf>,
    user: Option<String>,
    maildir: Option<PathBuf>,
    folder: Option<String>,
    create: bool,
) -> i32 {
    init_logging(Some("warn"));
    // Private modes for what it creates, as Courier's deliverquota.
    privileges::private_umask();
    let (md, quota, who) = if let Some(dir) = maildir {
        // A path the operator gives on the command line may be a link.
        tern_maildir::dirs::allow_linked_roots(true);
        (tern_maildir::Maildir::new(dir), None, "maildir".to_owned())
    } else {
        let Some(name) = user else {
            eprintln!("tern deliver: give --user or --maildir");
            return sysexits::USAGE;
        };
        let path = config
            .or_else(|| std::env::var_os("TERN_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("tern-data/tern.toml"));
        let cfg = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                // A broken configuration is the operator's to fix: the
                // mail waits in the queue meanwhile.
                eprintln!("tern deliver: {e}");
                return sysexits::TEMPFAIL;
            }
        };
        tern_maildir::dirs::allow_linked_roots(cfg.mail.linked_maildir);
        // A database lookup is asynchronous (and its pool wants a
        // runtime from the start): one small runtime for it.
        let found = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let directory = tern_server::users::open_directory(&cfg)?;
                    let db = UserDb::configured(directory, &cfg);
                    db.find(&name).await.map_err(|e| e.to_string())
                })
            });
        match found {
            Ok(Some(u)) => (u.maildir, u.quota, u.name),
            Ok(None) => {
                eprintln!("tern deliver: {name}: unknown user");
                return sysexits::NOUSER;
            }
            Err(e) => {
                eprintln!("tern deliver: {e}");
                return sysexits::TEMPFAIL;
            }
        }
    };
    if let Err(e) = md.ensure() {
        eprintln!("tern deliver: {e}");
        return sysexits::TEMPFAIL;
    }
    let target = match folder
        .as_deref()
        .map(|f| f.strip_prefix("INBOX.").unwrap_or(f))
    {
        None => None,
        Some(f) if f.eq_ignore_ascii_case("INBOX") => None,
        Some(f) => match tern_maildir::FolderName::new(f) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("tern deliver: folder {f:?}: {e}");
                return sysexits::USAGE;
            }
        },
    };
    let target = match target {
        Some(n) if !md.folder_exists(Some(&n)) => {
            if create {
                match md.create_folder(&n) {
                    Ok(()) | Err(tern_maildir::MaildirError::FolderExists) => Some(n),
                    Err(e) => {
                        eprintln!("tern deliver: cannot create folder {n}: {e}");
                        return sysexits::TEMPFAIL;
                    }
                }
            } else {
                // As Dovecot's LDA: a missing folder means INBOX.
                eprintln!("tern deliver: folder {n} does not exist, delivering to INBOX");
                None
            }
        }
        other => other,
    };
    let mut stdin = std::io::stdin().lock();
    match tern_maildir::deliver::deliver(&md, target.as_ref(), quota, &mut stdin) {
        Ok(path) => {
            tracing::info!(user = %who, file = %path.display(), "delivered");
            0
        }
        Err(tern_maildir::MaildirError::OverQuota) => {
            eprintln!("tern deliver: {who}: mailbox is over quota");
            sysexits::OVERQUOTA
        }
        Err(e) => {
            eprintln!("tern deliver: {e}");
            sysexits::TEMPFAIL
        }
    }
}

fn cert(out: &std::path::Path, names: &[String]) -> i32 {
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("tern cert: {}: {e}", out.display());
        return 73;
    }
    match tern_server::tls::generate_self_signed(names, &out.join("cert.pem"), &out.join("key.pem"))
    {
        Ok(()) => {
            println!(
                "wrote {} and {}",
                out.join("cert.pem").display(),
                out.join("key.pem").display()
            );
            0
        }
        Err(e) => {
            eprintln!("tern cert: {e}");
            1
        }
    }
}

fn pw(scheme: &str) -> i32 {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("tern pw: cannot read stdin: {e}");
        return 74;
    }
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hashed = match scheme.to_ascii_uppercase().as_str() {
        "ARGON2ID" => tern_auth::scheme::hash_argon2id(password.as_bytes()),
        "SHA512-CRYPT" => tern_auth::scheme::hash_sha512_crypt(password),
        "SSHA512" => Ok(tern_auth::scheme::hash_ssha512(password.as_bytes())),
        s @ ("SCRAM-SHA-256" | "SCRAM-SHA-1") => match tern_auth::scram::ScramHash::of_scheme(s) {
            Some(h) => Ok(tern_auth::scram::ScramKeys::generate(h, password.as_bytes()).encode()),
            None => Err(tern_auth::AuthError::UnknownScheme(s.to_owned())),
        },
        other => {
            eprintln!(
                "tern pw: unknown scheme {other} (use ARGON2ID, SHA512-CRYPT, SSHA512, SCRAM-SHA-256 or SCRAM-SHA-1)"
            );
            return EXIT_CONFIG;
        }
    };
    match hashed {
        Ok(h) => {
            println!("{h}");
            0
        }
        Err(e) => {
            eprintln!("tern pw: {e}");
            1
        }
    }
}

/// `tern proxy list|kick`: one command to the proxy's control socket.
fn proxy_control(socket: &std::path::Path, pool: bool, action: ProxyCmd) -> i32 {
    use std::io::{Read, Write};
    let line = match action {
        ProxyCmd::List => "LIST\n".to_owned(),
        ProxyCmd::Kick {
            user: Some(u),
            host: None,
        } => format!("KICK USER {u}\n"),
        ProxyCmd::Kick {
            user: None,
            host: Some(h),
        } => format!("KICK HOST {h}\n"),
        ProxyCmd::Kick { .. } => {
            eprintln!("tern proxy kick: a USER or --host HOST, one of them");
            return EXIT_CONFIG;
        }
        ProxyCmd::Move {
            user,
            host,
            hold_secs,
        } => format!("MOVE {user} {host} {hold_secs}\n"),
        ProxyCmd::Unmove { user } => format!("UNMOVE {user}\n"),
    };
    if line.split_whitespace().count() > 4 || line.contains('\0') {
        eprintln!("tern proxy: a name without spaces");
        return EXIT_CONFIG;
    }
    let line = if pool { format!("POOL {line}") } else { line };
    let mut s = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tern proxy: {}: {e}", socket.display());
            return 69;
        }
    };
    let mut out = String::new();
    if s.write_all(line.as_bytes()).is_err() || s.read_to_string(&mut out).is_err() {
        eprintln!("tern proxy: no answer on {}", socket.display());
        return 69;
    }
    print!("{out}");
    i32::from(out.starts_with("ERR"))
}

/// Creates `./tern-data/` on first start: config, users, certificate.
fn embedded_default() -> Result<PathBuf> {
    let dir = PathBuf::from("tern-data");
    let cfg = dir.join("tern.toml");
    if cfg.exists() {
        return Ok(cfg);
    }
    std::fs::create_dir_all(dir.join("mail")).context("creating tern-data/")?;
    let users = dir.join("users");
    if !users.exists() {
        use rand::Rng as _;
        let password: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        let hash = tern_auth::scheme::hash_argon2id(password.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::write(&users, format!("demo:{hash}::::::\n"))
            .context("writing tern-data/users")?;
        println!("Created user 'demo' with password '{password}' (shown only now; change it in tern-data/users with `tern pw`).");
    }
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        tern_server::tls::generate_self_signed(
            &["localhost".to_owned(), "127.0.0.1".to_owned()],
            &cert,
            &key,
        )?;
    }
    let text = format!(
        "# Generated by `tern serve` on first start; see docs/configuration.md.\n\
         hostname = \"localhost\"\n\n[imap]\nlisten = [\"{DEFAULT_IMAP_LISTEN}\"]\ntls_listen = [\"{DEFAULT_IMAPS_LISTEN}\"]\n\n\
         [pop3]\nlisten = [\"{DEFAULT_POP3_LISTEN}\"]\ntls_listen = [\"{DEFAULT_POP3S_LISTEN}\"]\n\n\
         [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[auth]\npasswd_file = \"users\"\n\n[mail]\nmaildir = \"mail/{{user}}/Maildir\"\n{}",
        if tern_maildir::owner::running_as_root() {
            "# The demo data belongs to root, who started tern; for real mail set\n\
             # user = \"vmail\" (the account that owns the Maildirs) instead.\nallow_root = true\n"
        } else {
            ""
        }
    );
    std::fs::write(&cfg, text).context("writing tern-data/tern.toml")?;
    Ok(cfg)
}

fn serve(config: Option<PathBuf>) -> i32 {
    let path = match config {
        Some(p) => p,
        None => match embedded_default() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tern: cannot set up the embedded default: {e:#}");
                return EXIT_CONFIG;
            }
        },
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern: bad configuration: {e}");
            return EXIT_CONFIG;
        }
    };
    init_logging(cfg.log.level.as_deref());
    // Everything that needs root happens before privileges are dropped,
    // and that before the runtime starts a thread.
    let ready = match prepare(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern: {e:#}");
            return EXIT_CONFIG;
        }
    };
    let passwd_file = cfg.auth.passwd_file.as_ref().map(|p| cfg.resolve(p));
    let must_read: Vec<&std::path::Path> = passwd_file.iter().map(PathBuf::as_path).collect();
    if let Err(e) = privileges::settle(&cfg.mail, &must_read) {
        eprintln!("tern: {e}");
        return EXIT_CONFIG;
    }
    tern_server::storage_gate::configure(
        cfg.limits.max_storage_jobs_per_account,
        std::time::Duration::from_secs(cfg.limits.storage_timeout_secs),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cfg.limits.blocking_threads.max(2))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tern: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = match rt.block_on(run_server(cfg, ready)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tern: {e:#}");
            EXIT_CONFIG
        }
    };
    // Storage calls stuck in the kernel (a dead NFS server, a lock held by
    // another program) are not waited for: dropping the runtime would wait
    // for every blocking thread, and SIGTERM must end the process within
    // its documented 10 s.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // The lock contention profile of the benchmarks (bench/run.sh --mode
    // stress sets it): how the folders' locks were waited for and held.
    if std::env::var_os("TERN_LOCK_STATS").is_some() {
        print!("tern: folder locks\n{}", tern_maildir::folder::lock_stats());
    }
    code
}

/// What the server takes from the system while it may still be root.
struct Prepared {
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The certificate's `tls-server-end-point` channel binding.
    end_point: Option<Vec<u8>>,
    listeners: Vec<(std::net::TcpListener, bool, Protocol, bool)>,
}

fn prepare(cfg: &Config) -> Result<Prepared> {
    let tls = match &cfg.tls {
        Some(t) => Some(
            tern_server::tls::server_config_with_clients(
                &cfg.resolve(&t.cert),
                &cfg.resolve(&t.key),
                t.client_ca.as_ref().map(|c| cfg.resolve(c)).as_deref(),
            )
            .context("loading the TLS certificate")?,
        ),
        None => None,
    };
    let end_point = match &cfg.tls {
        Some(t) => Some(
            tern_server::tls::end_point_of(&cfg.resolve(&t.cert))
                .context("loading the TLS certificate")?,
        ),
        None => None,
    };
    // The backends are opened (the passwd-file parsed) once, in the
    // runtime after the drop; here only that it can be opened at all.
    if let Some(pf) = &cfg.auth.passwd_file {
        std::fs::File::open(cfg.resolve(pf)).context("reading the passwd-file")?;
    }
    // Bind everything before serving anything: a port in use fails the start.
    let mut listeners = Vec::new();
    for (addrs, is_tls, protocol, haproxy) in [
        (&cfg.imap.listen, false, Protocol::Imap, false),
        (&cfg.imap.tls_listen, true, Protocol::Imap, false),
        (&cfg.pop3.listen, false, Protocol::Pop3, false),
        (&cfg.pop3.tls_listen, true, Protocol::Pop3, false),
        (&cfg.imap.haproxy_listen, false, Protocol::Imap, true),
        (&cfg.imap.haproxy_tls_listen, true, Protocol::Imap, true),
        (&cfg.pop3.haproxy_listen, false, Protocol::Pop3, true),
        (&cfg.pop3.haproxy_tls_listen, true, Protocol::Pop3, true),
        (&cfg.lmtp.listen, false, Protocol::Lmtp, false),
    ] {
        for a in addrs {
            let l = bind(a).with_context(|| format!("cannot listen on {a}"))?;
            let local = l.local_addr()?;
            let name = match protocol {
                Protocol::Imap => "imap",
                Protocol::Pop3 => "pop3",
                Protocol::Lmtp => "lmtp",
            };
            println!(
                "tern: listening {name}{}{} {local}",
                if is_tls { "s" } else { "" },
                if haproxy { "+haproxy" } else { "" }
            );
            listeners.push((l, is_tls, protocol, haproxy));
        }
    }
    Ok(Prepared {
        tls,
        end_point,
        listeners,
    })
}

/// A listening socket as tokio makes one (SO_REUSEADDR, so a restart
/// never waits for old connections' TIME_WAIT), made before any runtime.
fn bind(addr: &str) -> Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs as _;
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address"))?;
    let s = socket2::Socket::new(
        socket2::Domain::for_address(sa),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&sa.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

async fn run_server(cfg: Config, ready: Prepared) -> Result<()> {
    let acceptor = ready.tls.map(tokio_rustls::TlsAcceptor::from);
    let directory = tern_server::users::open_directory(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    let mut users = UserDb::configured(directory, &cfg);
    if let Some(m) = &cfg.auth.master_passwd_file {
        let masters = tern_auth::PasswdFile::open(&cfg.resolve(m))
            .context("reading auth.master_passwd_file")?;
        users = users.with_masters(masters, &cfg.auth.master_separator);
    }
    let mut listeners = Vec::with_capacity(ready.listeners.len());
    for (l, tls, protocol, haproxy) in ready.listeners {
        listeners.push(BoundListener {
            listener: tokio::net::TcpListener::from_std(l)?,
            tls,
            protocol,
            haproxy,
        });
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let svc = Arc::new(Services {
        hostname: cfg.hostname.clone(),
        limits: cfg.limits.clone(),
        cleartext: cfg.auth.cleartext,
        max_auth_failures: cfg.auth.max_failures.max(1),
        failure_delay: Duration::from_millis(cfg.auth.failure_delay_ms),
        users: Some(users),
        tls: acceptor.clone(),
        folders: FolderRegistry::new(cfg.limits.idle_check_interval(), cfg.limits.poll_interval()),
        shutdown: shutdown_rx,
        policy: Policy::from_config(&cfg),
        namespace: Namespace::new(&cfg.imap.namespace_prefix, cfg.imap.separator)
            .map_err(|e| anyhow::anyhow!("imap.namespace_prefix: {e}"))?,
        login_failures: tern_server::login::FailureLedger::new(
            cfg.auth.block_after,
            Duration::from_secs(cfg.auth.block_secs),
            cfg.auth.block_loopback,
        ),
        sasl: tern_server::sasl::SaslSettings {
            cert_field: cfg
                .tls
                .as_ref()
                .map(|t| t.cert_username_field)
                .unwrap_or_default(),
            oauth: match &cfg.auth.oauth {
                Some(o) => Some(Arc::new(
                    o.endpoint(&cfg.base_dir)
                        .map_err(|e| anyhow::anyhow!("auth.oauth: {e}"))?,
                )),
                None => None,
            },
            ..tern_server::sasl::SaslSettings::new(
                &tern_server::sasl::SaslSettings::parse_names(&cfg.auth.mechanisms)
                    .map_err(|e| anyhow::anyhow!(e))?,
                ready.end_point,
            )
        },
        user_connections: Default::default(),
        haproxy: tern_server::listener::HaproxySettings {
            trusted: cfg.haproxy.networks().map_err(|e| anyhow::anyhow!(e))?,
            timeout: Duration::from_secs(cfg.haproxy.timeout_secs.max(1)),
        },
        proxy: {
            let mut p = cfg
                .proxy
                .settings(&cfg.base_dir)
                .map_err(|e| anyhow::anyhow!("[proxy]: {e}"))?;
            // A mailhost naming one of these addresses is served here.
            p.own_listeners = listeners
                .iter()
                .filter(|l| matches!(l.protocol, Protocol::Imap))
                .filter_map(|l| l.listener.local_addr().ok())
                .collect();
            p
        },
        proxy_health: Default::default(),
        login_trusted: cfg
            .auth
            .login_trusted_networks
            .iter()
            .map(|n| tern_server::haproxy::Network::parse(n))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("auth.login_trusted_networks: {e}"))?,
        relayed: Arc::new(match &cfg.proxy.moves_file {
            Some(f) => tern_server::proxy::Relayed::with_moves_file(cfg.resolve(f))
                .with_context(|| format!("reading proxy.moves_file {}", f.display()))?,
            None => tern_server::proxy::Relayed::default(),
        }),
        lmtp: tern_server::lmtp::LmtpSettings {
            local_part_only: cfg.lmtp.local_part_only,
            health: Default::default(),
            kept: Default::default(),
        },
    });
    tokio::spawn(tern_server::proxy::check_health(
        svc.proxy.clone(),
        svc.proxy_health.clone(),
    ));
    let peers = Arc::new(tern_server::proxy::ControlPeers {
        peers: cfg.proxy.peers.clone(),
        secret: cfg.proxy.control_secret.clone(),
    });
    if let Some(sock) = &cfg.proxy.control_socket {
        tokio::spawn(tern_server::proxy::control(
            cfg.resolve(sock),
            svc.relayed.clone(),
            peers.clone(),
        ));
    }
    if let (Some(addr), Some(secret)) = (&cfg.proxy.control_listen, &cfg.proxy.control_secret) {
        let l = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("proxy.control_listen {addr}: {e}"))?;
        println!(
            "tern: listening proxy-control {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        tokio::spawn(tern_server::proxy::control_tcp(
            l,
            svc.relayed.clone(),
            secret.clone(),
        ));
    }
    if let Some(sock) = &cfg.lmtp.socket {
        let path = cfg.resolve(sock);
        let mode = cfg.lmtp.socket_mode().map_err(|e| anyhow::anyhow!(e))?;
        tern_server::lmtp::serve_unix(svc.clone(), path.clone(), mode)
            .await
            .map_err(|e| anyhow::anyhow!("lmtp.socket {}: {e}", path.display()))?;
        println!("tern: listening lmtp-unix {}", path.display());
    }
    tracing::info!(hostname = %cfg.hostname, "tern started");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    listener::run(svc, listeners, acceptor).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn imapd(maildir: PathBuf) -> i32 {
    init_logging(Some("warn"));
    privileges::private_umask();
    // Run as the user by a login program, on the Maildir it names (as
    // Courier's imapd): the kernel keeps the user out of other accounts',
    // and the path given may be a link.
    tern_maildir::dirs::allow_linked_roots(true);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tern imapd: cannot start the runtime: {e}");
            return 1;
        }
    };
    let root = if maildir.is_absolute() {
        maildir
    } else {
        std::env::current_dir()
            .map(|d| d.join(&maildir))
            .unwrap_or(maildir)
    };
    let user = User::for_maildir(
        std::env::var("USER").unwrap_or_else(|_| "user".to_owned()),
        tern_maildir::Maildir::new(root),
    );
    rt.block_on(async move {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let svc = Arc::new(Services::standalone("localhost", None, rx));
        let stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        serve_connection(svc, Box::new(stdio), SessionStart::Preauth(user)).await;
    });
    0
}

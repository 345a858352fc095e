//! Running as the mail user, never as root unless told to.
//!
//! `tern serve` started as root binds its ports, reads its certificate key
//! and passwd-file, then becomes `mail.user` (the account that owns the
//! Maildirs of a virtual-user site, `vmail` say) for good: real, effective
//! and saved IDs, and supplementary groups, so the kernel keeps it out of
//! everything else. That happens before the runtime starts any thread, so
//! the one thread there is carries it to every thread made later (Linux
//! keeps credentials per thread; the drop is checked to have happened on a
//! process of one thread). Started as root without `mail.user`, it refuses,
//! unless `mail.allow_root` says to go on (then what it creates in a Maildir
//! takes the owner of its directory, see `tern_maildir::owner`).
//!
//! The umask is 077 (configurable): folders 0700, files 0600, as Courier
//! and Dovecot make them.

use std::path::Path;

use rustix::process::{Gid, Uid};
use tern_server::config::MailConfig;

/// An account from `/etc/passwd`, or `uid:gid` given as numbers.
fn lookup(user: &str) -> Result<(u32, u32), String> {
    if let Some((u, g)) = user.split_once(':') {
        if let (Ok(u), Ok(g)) = (u.parse(), g.parse()) {
            return Ok((u, g));
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find mail.user {user:?}: {e}"))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == user {
            if let (Ok(u), Ok(g)) = (f[2].parse(), f[3].parse()) {
                return Ok((u, g));
            }
        }
    }
    Err(format!(
        "mail.user {user:?} is not in /etc/passwd (give \"uid:gid\" for an account known only by number)"
    ))
}

fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(Iterator::count)
}

/// The umask of `tern imapd` and `tern deliver`, which run as whoever
/// starts them (the account, as Courier's imapd and deliverquota do).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Raises the soft limit of open files to the hard one (systemd and most
/// shells give 1024): each connection holds a socket and each selected
/// folder two directories (tern_maildir::dirs), so a server of thousands
/// of sessions needs more. Done before any drop of root, as Dovecot's
/// master asks for in its unit file.
fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let from = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::debug!(from, to = lim.current, "open files limit raised"),
            Err(e) => tracing::warn!(cause = %e, "cannot raise the open files limit"),
        }
    }
}

/// Sets the umask and, when running as root, becomes `mail.user` or
/// refuses. `must_read` are files the server reads again later (the
/// passwd-file): the mail user must be able to.
///
/// # Errors
/// A text for the operator.
pub fn settle(mail: &MailConfig, must_read: &[&Path]) -> Result<(), String> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mail.umask()));
    tern_maildir::dirs::allow_linked_roots(mail.linked_maildir);
    raise_open_files();
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let Some(user) = &mail.user else {
        if mail.allow_root {
            if mail.account_uids == tern_server::config::AccountUids::None {
                tracing::warn!("serving mail as root (mail.allow_root): what tern creates in a Maildir takes the owner of its directory");
            } else {
                tern_server::creds::enable();
                tracing::info!(accounts = ?mail.account_uids, "serving mail as root: storage work runs with each account's uid and gid where it has them (mail.account_uids)");
            }
            return Ok(());
        }
        return Err("refusing to serve mail as root: set mail.user to the account that owns the Maildirs (e.g. \"vmail\"), or mail.allow_root = true".into());
    };
    let (uid, gid) = lookup(user)?;
    if uid == 0 {
        return Err(format!(
            "mail.user {user:?} is root: use mail.allow_root instead"
        ));
    }
    if threads() != Some(1) {
        return Err("cannot drop privileges: the process already runs more than one thread".into());
    }
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::thread::set_thread_groups(&[g])
        .and_then(|()| rustix::thread::set_thread_res_gid(g, g, g))
        .and_then(|()| rustix::thread::set_thread_res_uid(u, u, u))
        .map_err(|e| format!("cannot become mail.user {user:?} ({uid}:{gid}): {e}"))?;
    if rustix::process::geteuid() != u
        || rustix::process::getegid() != g
        || rustix::process::getuid() != u
    {
        return Err(format!("could not become mail.user {user:?}"));
    }
    for p in must_read {
        std::fs::File::open(p).map_err(|e| {
            format!(
                "{} must be readable by mail.user {user:?}: {e}",
                p.display()
            )
        })?;
    }
    tracing::info!(user = %user, uid, gid, "running as the mail user");
    Ok(())
}

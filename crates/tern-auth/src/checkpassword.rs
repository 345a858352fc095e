//! The qmail checkpassword interface, for a site's own password logic: the
//! program reads `user NUL password NUL timestamp NUL` from file descriptor
//! 3, and when the password is right runs the program named by its
//! arguments (exit 0); a wrong password exits 1, a temporary problem 111.
//!
//! tern has it run `env`, so that what the program sets for the account
//! (`HOME`, `USER`, Dovecot's `userdb_mail` and other `userdb_*` fields, as
//! for Dovecot's checkpassword) comes back on its output. The data goes to
//! descriptor 3 through `sh -c 'exec prog env 3<&0 </dev/null'`: no login
//! name or password is ever an argument or pasted into a command line.
//! Each run is bounded in time (killed at the timeout) and in number (at
//! most `max_running` at once; more get "try again later" at once).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// Largest input the interface allows (user, password and timestamp).
const MAX_INPUT: usize = 512;

/// Largest output of `env` read.
const MAX_OUTPUT: u64 = 64 * 1024;

/// A configured checkpassword program.
#[derive(Debug)]
pub struct Checkpassword {
    program: PathBuf,
    timeout: Duration,
    running: Arc<tokio::sync::Semaphore>,
    /// This backend's place in the directory.
    index: usize,
}

/// `env`, the program the checkpassword program runs when it accepts.
fn env_program() -> &'static str {
    if std::path::Path::new("/usr/bin/env").exists() {
        "/usr/bin/env"
    } else {
        "/bin/env"
    }
}

impl Checkpassword {
    /// `program`, run for at most `timeout`, `max_running` at once.
    pub fn new(
        program: PathBuf,
        timeout: Duration,
        max_running: usize,
        index: usize,
    ) -> Checkpassword {
        Checkpassword {
            program,
            timeout,
            running: Arc::new(tokio::sync::Semaphore::new(max_running.max(1))),
            index,
        }
    }

    /// The account a login names, to be checked by running the program.
    /// The program decides whether the account exists, and only with a
    /// password: a lookup without one (a delivery) finds nothing here.
    pub fn lookup(&self, req: &Request<'_>) -> Option<UserEntry> {
        (req.service != "deliver").then(|| UserEntry {
            user: req.user.to_owned(),
            password: String::new(),
            home: String::new(),
            mail: None,
            extra: HashMap::new(),
            auth: EntryAuth::Checkpassword {
                backend: self.index,
            },
            system: false,
        })
    }

    /// Runs the program for `user` and `password`: the account as the
    /// program describes it when it accepts, `None` when it refuses.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when it exits 111 (or anything but 0 and
    /// 1), cannot be started, takes longer than the timeout, or too many
    /// are running.
    pub async fn check(
        &self,
        user: &str,
        password: &[u8],
        service: &str,
        remote: &str,
    ) -> Result<Option<UserEntry>, AuthError> {
        let unavailable = |why: String| AuthError::Unavailable(format!("checkpassword: {why}"));
        if user.contains('\0')
            || password.contains(&0)
            || user.len() + password.len() + 24 > MAX_INPUT
        {
            return Ok(None);
        }
        let Ok(_permit) = self.running.clone().try_acquire_owned() else {
            return Err(unavailable("too many running".into()));
        };
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 </dev/null")
            .arg(&self.program)
            .arg(env_program())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("PROTO", "TCP")
            .env("TCPREMOTEIP", remote)
            .env("SERVICE", service)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unavailable(format!("{}: {e}", self.program.display())))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut input = Vec::with_capacity(MAX_INPUT);
        input.extend_from_slice(user.as_bytes());
        input.push(0);
        input.extend_from_slice(password);
        input.push(0);
        input.extend_from_slice(stamp.to_string().as_bytes());
        input.push(0);
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let run = async {
            if let Some(mut s) = stdin.take() {
                // A program that does not read its input is its business.
                let _ = s.write_all(&input).await;
            }
            let mut out = Vec::new();
            if let Some(o) = stdout {
                let _ = o.take(MAX_OUTPUT).read_to_end(&mut out).await;
            }
            let status = child.wait().await;
            (status, out)
        };
        let (status, out) = match tokio::time::timeout(self.timeout, run).await {
            Ok(v) => v,
            // The child is killed when dropped.
            Err(_) => return Err(unavailable("timed out".into())),
        };
        let status = status.map_err(|e| unavailable(e.to_string()))?;
        match status.code() {
            Some(0) => Ok(Some(self.entry_of(user, &out))),
            Some(1) => Ok(None),
            Some(c) => Err(unavailable(format!("exit status {c}"))),
            None => Err(unavailable("killed by a signal".into())),
        }
    }

    /// The account from what `env` printed: `USER` (the canonical name),
    /// `HOME`, `userdb_mail`/`MAIL` (the Maildir, `maildir:` prefix
    /// dropped) and other `userdb_*` fields.
    fn entry_of(&self, user: &str, env: &[u8]) -> UserEntry {
        let text = String::from_utf8_lossy(env);
        let mut extra = HashMap::new();
        let (mut name, mut home, mut mail) = (None, String::new(), None);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "USER" if !v.is_empty() => name = Some(v.to_owned()),
                "HOME" => home = v.to_owned(),
                "MAIL" | "MAILDIR" | "userdb_mail" => {
                    mail = Some(v.strip_prefix("maildir:").unwrap_or(v).to_owned());
                }
                k => {
                    if let Some(field) = k.strip_prefix("userdb_") {
                        extra.insert(field.to_owned(), v.to_owned());
                    }
                }
            }
        }
        UserEntry {
            user: name.unwrap_or_else(|| user.to_owned()),
            password: String::new(),
            home,
            mail,
            extra,
            auth: EntryAuth::Checkpassword {
                backend: self.index,
            },
            system: false,
        }
    }
}

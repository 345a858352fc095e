//! The whole IMAP session under fuzzing: the input is what a client sends,
//! run through the real session (framer, parser, state, every command's
//! handler, the synchronisation step) over an in-memory stream, on a
//! small Maildir made for each input in a temporary directory (on
//! `/dev/shm` where it exists, so the store is in memory too).
//!
//! Why the real session and not a model: the handlers are where input
//! meets storage, and that is where a panic, a hang or a lost message
//! would be. What is checked, whatever the bytes:
//! - the session ends once the client's input ends (no hang);
//! - what the server sends is a sequence of IMAP responses: untagged,
//!   continuation or tagged `OK`/`NO`/`BAD`, each line ended by CRLF and
//!   every literal as long as it says; the first is the greeting; nothing
//!   but a tagged answer follows a BYE;
//! - every tagged answer carries a tag the client sent;
//! - no message is lost: when the input holds none of the words that
//!   remove or move messages (EXPUNGE, MOVE, CLOSE, DELETE, RENAME), every
//!   message file made for the run is still in its folder;
//! - the UID list written for INBOX gives no UID twice.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::imap::{serve_connection, Services, SessionStart};
use crate::users::{User, UserDb};

/// Past this much output the client stops reading (and the session ends
/// on a failed write); only the complete responses before it are checked.
const OUTPUT_CAP: usize = 8 << 20;

/// Longer than any session over this small store may take.
const SESSION_LIMIT: Duration = Duration::from_secs(60);

/// The messages every run starts with: (folder, file name, text).
const MESSAGES: [(&str, &str, &str); 4] = [
    (
        "",
        "1700000000.M1P1.fuzz:2,S",
        "From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: plain\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n",
    ),
    (
        "",
        "1700000001.M2P1.fuzz:2,",
        "From: =?UTF-8?B?w4VzYQ==?= <asa@example.org>\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n\
         In-Reply-To: <1@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         caf=C3=A9 =\r\nsoft\r\n--b1\r\nContent-Type: application/octet-stream; name=a.bin\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n--b1--\r\n",
    ),
    (
        "",
        "1700000002.M3P1.fuzz",
        "Subject: broken\r\nContent-Type: multipart/alternative\r\n\r\nno boundary at all\r\n",
    ),
    (
        ".Work",
        "1700000003.M4P1.fuzz:2,F",
        "Subject: in a folder\r\nMessage-ID: <4@example.org>\r\nReferences: <1@example.org>\r\n\r\nx\r\n",
    ),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // Started once, so no run pays for threads; a fuzzing setup that
        // cannot start a runtime cannot run at all.
        #[allow(clippy::expect_used)]
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// One fuzz input. Its first byte chooses how the session starts (even:
/// pre-authenticated as `tern imapd` runs; odd: at the login, with the
/// account `fuzz`, password `pw`) and the size of the pieces the rest is
/// sent in; the rest is the client's bytes.
pub fn imap_session(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    #[allow(clippy::expect_used)]
    let base = base.expect("a temporary directory");
    let maildir = base.path().join("Maildir");
    let (output, complete) = run(first, input, base.path());
    check_responses(&output, complete, input);
    check_store(&maildir, input);
}

/// Runs one session on a new store in `home`: what the server sent, and
/// whether all of it was read.
#[allow(clippy::unwrap_used, clippy::expect_used)]
fn run(first: u8, input: &[u8], home: &Path) -> (Vec<u8>, bool) {
    let maildir = home.join("Maildir");
    for (folder, name, text) in MESSAGES {
        let dir = maildir.join(folder);
        tern_maildir::maildir::make_maildir_dirs(&dir).unwrap();
        let sub = if name.contains(":2,") { "cur" } else { "new" };
        std::fs::write(dir.join(sub).join(name), text).unwrap();
    }
    let (users, start) = if first % 2 == 0 {
        let user = User::for_maildir("fuzz".into(), tern_maildir::Maildir::new(maildir.clone()));
        (None, SessionStart::Preauth(user))
    } else {
        let passwd = home.join("passwd");
        std::fs::write(
            &passwd,
            format!("fuzz:{{PLAIN}}pw::::{}::\n", home.display()),
        )
        .unwrap();
        let file = tern_auth::passwd_file::PasswdFile::open(&passwd).unwrap();
        let users = UserDb::new(file, "{home}/Maildir".into(), home.to_path_buf());
        let start = SessionStart::Login {
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
            hop: None,
            tls: false,
            binding: None,
            slot: None,
        };
        (Some(users), start)
    };
    let piece = usize::from(first / 2 % 64) * 37 + 1;
    let input = input.to_vec();
    runtime().block_on(async move {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let svc = Arc::new(Services::standalone("fuzz.example", users, rx));
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async move {
            for p in input.chunks(piece) {
                if to_server.write_all(p).await.is_err() {
                    return;
                }
            }
            let _ = to_server.shutdown().await;
        };
        let receive = async move {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return (out, true),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if out.len() > OUTPUT_CAP {
                    return (out, false);
                }
            }
        };
        let session = serve_connection(svc, Box::new(server), start);
        let run = async {
            let ((), (), received) = tokio::join!(session, send, receive);
            received
        };
        tokio::time::timeout(SESSION_LIMIT, run)
            .await
            .expect("the session ended once the client's input ended")
    })
}

/// The output is a sequence of IMAP responses (see the module's text).
#[allow(clippy::panic)]
fn check_responses(out: &[u8], complete: bool, input: &[u8]) {
    let mut at = 0;
    let mut first = true;
    let mut after_bye = false;
    let mut ended = false;
    while at < out.len() {
        let Some(len) = response_len(&out[at..]) else {
            assert!(
                !complete,
                "an unterminated response at byte {at}: {:?}",
                String::from_utf8_lossy(&out[at..(at + 200).min(out.len())])
            );
            return;
        };
        let resp = &out[at..at + len];
        let line = String::from_utf8_lossy(&resp[..resp.len().min(200)]).into_owned();
        assert!(!ended, "a response after the session's last: {line:?}");
        if first {
            assert!(
                resp.starts_with(b"* OK ")
                    || resp.starts_with(b"* PREAUTH ")
                    || resp.starts_with(b"* BYE "),
                "the first response is no greeting: {line:?}"
            );
            first = false;
        } else if resp.starts_with(b"* ") {
            assert!(!after_bye, "an untagged response after BYE: {line:?}");
        } else if resp.starts_with(b"+") {
            assert!(!after_bye, "a continuation after BYE: {line:?}");
        } else {
            let tag_end = resp.iter().position(|&b| b == b' ').unwrap_or(resp.len());
            let tag = &resp[..tag_end];
            assert!(
                !tag.is_empty() && tag.iter().all(|&b| b > b' ' && b < 0x7f),
                "a tagged answer with no tag: {line:?}"
            );
            assert!(
                memmem(input, tag),
                "a tagged answer whose tag the client never sent: {line:?}"
            );
            let rest = &resp[tag_end..];
            assert!(
                rest.starts_with(b" OK") || rest.starts_with(b" NO") || rest.starts_with(b" BAD"),
                "a tagged answer that is not OK, NO or BAD: {line:?}"
            );
            if after_bye {
                ended = true;
            }
        }
        if resp.starts_with(b"* BYE") {
            after_bye = true;
        }
        at += len;
    }
}

/// The length of the response at the start of `out`, literals included;
/// `None` if it is not complete.
fn response_len(out: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = out[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let line = &out[at..eol];
        assert!(
            !line.contains(&b'\n') && !line.contains(&b'\r'),
            "a bare CR or LF in a response line: {:?}",
            String::from_utf8_lossy(line)
        );
        match literal_at_end(line) {
            Some(n) => {
                at = eol + 2 + n;
                if at > out.len() {
                    return None;
                }
            }
            None => return Some(eol + 2),
        }
    }
}

/// The size of the literal a line announces at its end (`{n}` or `~{n}`).
fn literal_at_end(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 12 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// No message is lost and no UID given twice (see the module's text).
#[allow(clippy::panic)]
fn check_store(maildir: &Path, input: &[u8]) {
    let lower = input.to_ascii_lowercase();
    let may_remove = ["expunge", "move", "close", "delete", "rename"]
        .iter()
        .any(|w| memmem(&lower, w.as_bytes()));
    if !may_remove {
        for (folder, name, _) in MESSAGES {
            let base = name.split(':').next().unwrap_or(name);
            let dir = maildir.join(folder);
            let found = ["cur", "new"].iter().any(|sub| {
                std::fs::read_dir(dir.join(sub)).is_ok_and(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(base))
                })
            });
            assert!(found, "message {name} of {folder:?} was lost");
        }
    }
    if let Ok(text) = std::fs::read_to_string(maildir.join("courierimapuiddb")) {
        if let tern_maildir::uiddb::ParseOutcome::Ok(db) =
            tern_maildir::uiddb::UidDb::parse_courier(&text)
        {
            let mut uids: Vec<u32> = db.uids.values().copied().collect();
            uids.sort_unstable();
            let n = uids.len();
            uids.dedup();
            assert_eq!(uids.len(), n, "a UID given to two messages");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The harness really runs the session: a seed's answers are there.
    #[test]
    fn a_session_runs_over_the_store_made_for_it() {
        let home = tempfile::tempdir().unwrap();
        let input = b"a1 LOGIN fuzz pw\r\na2 SELECT INBOX\r\na3 FETCH 2 (BODY[1])\r\n\
                      a4 SELECT INBOX.Work\r\na5 LOGOUT\r\n";
        let (out, complete) = run(1, input, home.path());
        let text = String::from_utf8_lossy(&out);
        assert!(complete);
        for want in [
            "* OK [CAPABILITY ",
            "a1 OK ",
            "* 3 EXISTS\r\n",
            "* 3 RECENT\r\n",
            "a3 OK ",
            "BODY[1] {17}\r\ncaf=C3=A9 =\r\nsoft)",
            "* 1 EXISTS\r\n",
            "* BYE ",
            "a5 OK ",
        ] {
            assert!(text.contains(want), "no {want:?} in {text}");
        }
        check_responses(&out, complete, input);
        check_store(&home.path().join("Maildir"), input);
        // Pre-authenticated, in one-byte pieces.
        let (out, _) = run(0, b"b1 NOOP\r\n", home.path());
        assert!(
            out.starts_with(b"* PREAUTH "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(String::from_utf8_lossy(&out).contains("b1 OK "));
    }

    #[test]
    fn the_response_checks_catch_what_they_are_for() {
        let ok = b"* OK hi\r\n* 1 FETCH (BODY[] {3}\r\na\r\n)\r\na1 OK done\r\n";
        check_responses(ok, true, b"a1 NOOP\r\n");
        for (bad, why) in [
            (&b"a1 OK no greeting\r\n"[..], "greeting"),
            (b"* OK hi\r\nzz OK\r\n", "never sent"),
            (b"* OK hi\r\na1 MAYBE\r\n", "not OK, NO or BAD"),
            (b"* OK hi\r\n* BYE x\r\n* 1 EXISTS\r\n", "after BYE"),
            (
                b"* OK hi\r\n* 1 FETCH (BODY[] {9}\r\nab)\r\n",
                "unterminated",
            ),
            (b"* OK hi\r\n* a\nb\r\n", "bare CR or LF"),
        ] {
            let r = std::panic::catch_unwind(|| check_responses(bad, true, b"a1 NOOP\r\n"));
            let msg = r.err().and_then(|e| e.downcast_ref::<String>().cloned());
            assert!(
                msg.as_deref().is_some_and(|m| m.contains(why)),
                "{why}: {msg:?}"
            );
        }
    }
}
/// Prints what the server sent for the input in `$FUZZ_INPUT` (a fuzz
/// artifact): `FUZZ_INPUT=... cargo test -p tern-server --lib
/// fuzzing::imap_session::show -- --ignored --nocapture`.
#[cfg(test)]
#[test]
#[ignore]
#[allow(clippy::unwrap_used)]
fn show() {
    let data = std::fs::read(std::env::var("FUZZ_INPUT").unwrap()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let (out, _) = run(data[0], &data[1..], home.path());
    println!("{}", String::from_utf8_lossy(&out));
}

//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and the
//! replay test: the whole POP3 engine over an in-memory maildrop, and the
//! dot-stuffer. Each panics when an invariant breaks.

use crate::maildrop::{Action, Listed, Maildrop};
use crate::stuff::Stuffer;
use crate::{allowed, parse, Allowed, Command, Phase};

struct Messages(Vec<(u64, String)>);

impl Listed for Messages {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn size(&self, i: usize) -> u64 {
        self.0[i].0
    }
    fn uidl(&self, i: usize) -> &str {
        &self.0[i].1
    }
}

/// Command lines (split at LF) through the parser, the phase rule and, once
/// "logged in" (after a PASS), the TRANSACTION engine over five messages.
/// Checks: STAT counts what LIST lists; a message sent is one that exists
/// and is not deleted; RSET unmarks all; QUIT's deletions are what DELE
/// marked.
pub fn engine(data: &[u8]) {
    let msgs = Messages((1..=5).map(|i| (i * 100, format!("u{i}"))).collect());
    let mut drop = Maildrop::new(msgs);
    let mut phase = Phase::Authorization;
    let mut marked = [false; 5];
    for line in data.split(|&b| b == b'\n').take(200) {
        let cmd = parse(line);
        if allowed(&cmd, phase) != Allowed::Yes {
            continue;
        }
        if phase == Phase::Authorization {
            if matches!(cmd, Command::Pass(_)) {
                phase = Phase::Transaction;
            }
            continue;
        }
        let action = drop.handle(&cmd);
        match (&cmd, &action) {
            (Command::Dele(a), Action::Reply(r)) if r.starts_with("+OK") => {
                let n: usize = a.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
                assert!((1..=5).contains(&n) && !marked[n - 1], "DELE took {a:?}");
                marked[n - 1] = true;
            }
            (Command::Rset, _) => {
                marked = [false; 5];
                assert_eq!(drop.marked().count(), 0, "RSET left marks");
            }
            (Command::Retr(_) | Command::Top(..), Action::Send { index, .. }) => {
                assert!(*index < 5 && !marked[*index], "sent a deleted message");
            }
            (Command::Stat, Action::Reply(r)) => {
                let live = marked.iter().filter(|m| !**m).count();
                assert!(r.starts_with(&format!("+OK {live} ")), "{r}");
            }
            _ => {}
        }
        let ours: Vec<usize> = (0..5).filter(|&i| marked[i]).collect();
        assert_eq!(drop.marked().collect::<Vec<_>>(), ours, "marks differ");
    }
}

/// The stuffer on `data` split where its first byte says: every line of the
/// output ends in CRLF and none is a lone `.` (which would end the
/// answer early).
pub fn stuff(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(1));
    let cut = usize::from(head.first().copied().unwrap_or(1) % 16) + 1;
    let top = head
        .first()
        .map(|b| u64::from(b % 4))
        .filter(|_| data.len() % 2 == 0);
    let mut st = Stuffer::new(top);
    let mut out = Vec::new();
    let mut more = true;
    for piece in body.chunks(cut) {
        if !st.push(piece, &mut out) {
            more = false;
            break;
        }
    }
    if more {
        st.finish(&mut out);
    }
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "no final CRLF");
    for line in out.split(|&b| b == b'\n') {
        assert_ne!(line, b".\r", "a lone dot line");
    }
    let lf = out.iter().filter(|&&b| b == b'\n').count();
    let crlf = out.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(lf, crlf, "a bare LF");
}

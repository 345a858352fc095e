//! The IMAP command engine of one connection, free of I/O: bytes in,
//! steps and response bytes out, as rustls's state machines are. The
//! server's driver reads the socket, feeds [`Reader`], does what each
//! [`Step`] asks (open an APPEND's file, write a chunk, run a command on
//! storage) and writes out what the engine appended to its output buffer.
//!
//! What is decided here and nowhere else:
//! - which literal is an APPEND's message (streamed, never held) and
//!   which are part of the command (held, within the command's cap);
//! - the answers to what the framer refuses (too long, a literal too large
//!   to skip) and to what the grammar refuses;
//! - which commands each state allows ([`Phase::allows`]), from the parsed
//!   command's type, so no list of names can drift from the dispatch;
//! - SEARCHRES `$` ([`prepare`]): resolved on the typed command against
//!   the selected mailbox's saved result.
//!
//! The driver keeps what needs storage or sockets: the mailbox, the
//! stream of an APPEND, TLS, the login backends.

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::mailbox::Mailbox;

use crate::binary_sections::BinaryAlias;
use crate::criteria::Criteria;
use crate::esearch::ReturnOptions;
use crate::framer::{Continuation, Event, Framer, FramerLimits, LiteralInfo, TooLong};
use crate::ids::{Seq, Uid};
use crate::parsed::{self, Parsed, Refusal};
use crate::response::{Code, Reply};
use crate::{command as cmdparse, framing, seqset};

#[cfg(test)]
mod tests;

/// The state of an IMAP connection (RFC 3501 §3), as far as which
/// commands may run is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before a login.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
    /// LOGOUT was answered.
    Logout,
}

impl Phase {
    /// Whether `body` may run in this state; the text of the BAD
    /// otherwise (RFC 3501 §6: each command names the states it is valid
    /// in).
    pub fn allows(self, body: &CommandBody<'_>) -> Result<(), &'static str> {
        use CommandBody as C;
        if matches!(body, C::Capability | C::Noop | C::Logout | C::Id { .. }) {
            return Ok(());
        }
        let login = matches!(body, C::StartTLS | C::Authenticate { .. } | C::Login { .. });
        let selected_only = matches!(
            body,
            C::Check
                | C::Close
                | C::Unselect
                | C::Expunge
                | C::ExpungeUid { .. }
                | C::Search { .. }
                | C::Fetch { .. }
                | C::Store { .. }
                | C::Copy { .. }
                | C::Move { .. }
                | C::Sort { .. }
                | C::Thread { .. }
        );
        match self {
            Phase::NotAuthenticated if login => Ok(()),
            Phase::NotAuthenticated => Err("Command not allowed before login"),
            Phase::Authenticated | Phase::Selected if login => {
                Err("Command not allowed after login")
            }
            Phase::Authenticated if selected_only => Err("No mailbox selected"),
            Phase::Authenticated | Phase::Selected => Ok(()),
            Phase::Logout => Err("Command not allowed in this state"),
        }
    }
}

/// Longest mailbox-name literal of an APPEND whose arguments do not parse:
/// a longer literal there is taken for a message and refused at once rather
/// than read into memory.
const MAX_APPEND_ARG_LITERAL: u64 = 1024;

/// An APPEND's message literal is its first or second literal (after a
/// mailbox name sent as a literal; flags and date are never literals).
/// Later literals are never parsed for it, so a command of thousands of
/// small literals costs one pass.
const MESSAGE_LITERAL_AT_MOST: usize = 2;

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes and [`Reader::feed`] them.
    NeedInput,
    /// Write out the output buffer if it holds anything (a continuation
    /// request the client waits for) and ask again.
    Flush,
    /// The message literal of an APPEND to `mailbox` is announced: the
    /// driver opens its file and calls [`Reader::stream`], or
    /// [`Reader::refuse`] with the reason it cannot be stored.
    AppendMessage {
        /// The command's tag, when it has one.
        tag: Option<String>,
        /// The literal.
        info: LiteralInfo,
        /// The target mailbox, as the command names it.
        mailbox: Mailbox<'static>,
    },
    /// Bytes of the streamed message, in order.
    Chunk(Vec<u8>),
    /// A whole command as read (a streamed message stands as `{0}`): the
    /// driver finishes its stream, if any, and calls [`prepare`].
    Command(Vec<u8>),
    /// The command was dropped and its answer appended to the output; the
    /// driver abandons the stream of its message, if one was open.
    Answered,
    /// A BYE was appended: write it out and close the connection.
    Close,
}

/// Cuts a connection's bytes into commands and decides what becomes of
/// each literal (see the module's text).
#[derive(Debug)]
pub struct Reader {
    framer: Framer,
    /// Literals of the command being read.
    literals: usize,
    /// The command's message literal is being streamed.
    streaming: bool,
}

impl Reader {
    /// A reader enforcing `limits`.
    pub fn new(limits: FramerLimits) -> Reader {
        Reader {
            framer: Framer::new(limits),
            literals: 0,
            streaming: false,
        }
    }

    /// Takes bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.framer.feed(bytes);
    }

    /// The framer, for what is read outside commands (a SASL response,
    /// IDLE's `DONE`) and for handing the connection on.
    pub fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    /// The next step; answers and continuation requests are appended to
    /// `out`. In `phase` (only after a login is a literal an APPEND's
    /// message).
    pub fn next(&mut self, phase: Phase, out: &mut Vec<u8>) -> Step {
        match self.framer.next_event() {
            Event::NeedInput => Step::NeedInput,
            Event::Fatal => {
                self.reset();
                out.extend_from_slice(b"* BYE [LIMIT] Literal too large to skip, closing\r\n");
                Step::Close
            }
            Event::TooLong { what, tag } => {
                self.reset();
                let text = match what {
                    TooLong::Line => "Command line too long",
                    TooLong::Command => "Command too long",
                };
                answer(tag.as_deref(), &Reply::bad_code(Code::Limit, text), out);
                Step::Answered
            }
            Event::Command(bytes) => {
                self.reset();
                Step::Command(bytes)
            }
            Event::Chunk(bytes) => Step::Chunk(bytes.to_vec()),
            Event::Literal { info, prefix } => {
                self.literals += 1;
                let tag = framing::tag_of(prefix).map(str::to_owned);
                let decision = if self.streaming {
                    // MULTIAPPEND and CATENATE are not offered.
                    Err(Reply::bad("Only one message per APPEND is supported"))
                } else if phase != Phase::NotAuthenticated
                    && self.literals <= MESSAGE_LITERAL_AT_MOST
                {
                    match message_literal(prefix, info) {
                        Ok(Some(mailbox)) => return Step::AppendMessage { tag, info, mailbox },
                        Ok(None) => Ok(()),
                        Err(r) => Err(r),
                    }
                } else {
                    Ok(())
                };
                match decision {
                    Err(r) => {
                        self.refuse(tag.as_deref(), &r, out);
                        Step::Answered
                    }
                    Ok(()) => match self.framer.inline() {
                        Ok(plus) => continuation(plus, out),
                        Err(_) => {
                            self.reset();
                            let r = Reply::bad_code(Code::Limit, "Command too long");
                            answer(tag.as_deref(), &r, out);
                            Step::Answered
                        }
                    },
                }
            }
        }
    }

    /// Streams the announced message literal to the driver as
    /// [`Step::Chunk`]s; the `+` the client may wait for is appended to
    /// `out`, which the driver writes out.
    pub fn stream(&mut self, out: &mut Vec<u8>) {
        self.streaming = true;
        continuation(self.framer.stream(), out);
    }

    /// Refuses the announced literal with `reply` (for a synchronising
    /// literal before any `+`, RFC 3501 §7.5; a LITERAL+ one is read and
    /// dropped, RFC 7888 §4); the rest of its command is dropped.
    pub fn refuse(&mut self, tag: Option<&str>, reply: &Reply, out: &mut Vec<u8>) {
        self.framer.refuse();
        self.reset();
        answer(tag, reply, out);
    }

    fn reset(&mut self) {
        self.literals = 0;
        self.streaming = false;
    }
}

/// `+` when the client waits for one; either way the driver flushes what
/// is there and reads on.
fn continuation(plus: Continuation, out: &mut Vec<u8>) -> Step {
    if plus == Continuation::Send {
        out.extend_from_slice(b"+ Ready for literal data\r\n");
    }
    Step::Flush
}

/// Answers a dropped command: tagged when its tag could be read, else
/// untagged.
fn answer(tag: Option<&str>, reply: &Reply, out: &mut Vec<u8>) {
    reply.write_tagged(tag.unwrap_or("*"), out);
}

/// Whether a literal announced after `prefix` is an APPEND's message: it
/// is when the command so far parses as an APPEND with this literal as
/// its message (`Ok(Some(mailbox))`). A large literal in an APPEND that
/// does not parse so is refused rather than held.
fn message_literal(prefix: &[u8], info: LiteralInfo) -> Result<Option<Mailbox<'static>>, Reply> {
    if framing::command_name(prefix).as_deref() != Some("APPEND") {
        return Ok(None);
    }
    let mut probe = prefix.to_vec();
    probe.extend_from_slice(b"{0}\r\n\r\n");
    if let Ok(CommandBody::Append { mailbox, .. }) = cmdparse::parse(&probe).map(|c| c.body) {
        return Ok(Some(mailbox));
    }
    if info.len > MAX_APPEND_ARG_LITERAL {
        return Err(Reply::bad_code(
            Code::ClientBug,
            "Error in IMAP command APPEND: invalid arguments",
        ));
    }
    Ok(None)
}

/// The selected mailbox as `$` needs it (RFC 5182).
pub trait SavedResult {
    /// The UIDs of the saved result that are still in the mailbox, in
    /// ascending order.
    fn saved_uids(&self) -> Vec<u32>;
    /// The sequence number of a message.
    fn seq_of(&self, uid: Uid) -> Option<Seq>;
}

/// A command ready to run: parsed, allowed in its state, `$` resolved.
#[derive(Debug)]
pub struct Ready {
    /// Its tag.
    pub tag: String,
    /// The typed command.
    pub body: CommandBody<'static>,
    /// The RETURN options of an extended SEARCH.
    pub esearch: Option<ReturnOptions>,
    /// The criteria of SEARCH, SORT or THREAD.
    pub criteria: Option<Criteria>,
    /// The BODY sections that stand for BINARY items.
    pub binary_aliases: Vec<BinaryAlias>,
}

/// What became of a command.
#[derive(Debug)]
pub enum Prepared {
    /// Run it.
    Run(Box<Ready>),
    /// An ACL command (RFC 4314), which imap-codec's grammar lacks, allowed
    /// in this state.
    Acl {
        /// The command's tag.
        tag: String,
        /// Its arguments.
        command: crate::acl::AclCommand,
    },
    /// Answered (appended to the output); nothing to run. `unparsable`:
    /// the grammar refused it (worth a debug log line).
    Answered {
        /// The grammar refused the command.
        unparsable: bool,
    },
}

/// Parses a command read by [`Reader`], checks it against `phase` and
/// resolves `$` against `saved` (the selected mailbox, if any). Answers
/// what cannot run, appended to `out`.
pub fn prepare(
    bytes: &[u8],
    phase: Phase,
    max_search_keys: usize,
    saved: Option<&dyn SavedResult>,
    out: &mut Vec<u8>,
) -> Prepared {
    if framing::command_name(bytes).is_some_and(|n| crate::acl::is_acl_command(&n)) {
        return prepare_acl(bytes, phase, out);
    }
    let parsed = match parsed::parse(bytes, max_search_keys) {
        Ok(p) => p,
        Err(refusal) => {
            let tag = framing::tag_of(bytes).unwrap_or("*");
            let unparsable = match refusal {
                Refusal::Return(e) => {
                    Reply::bad(e.to_string()).write_tagged(tag, out);
                    false
                }
                Refusal::Criteria(e @ crate::criteria::Error::TooManyKeys(_)) => {
                    Reply::bad_code(Code::Limit, e.to_string()).write_tagged(tag, out);
                    false
                }
                Refusal::Criteria(_) | Refusal::Syntax(_) => {
                    answer_unparsable(bytes, out);
                    true
                }
            };
            return Prepared::Answered { unparsable };
        }
    };
    let Parsed {
        command: Command { tag, mut body },
        esearch,
        mut criteria,
        saved_set,
        binary_aliases,
    } = parsed;
    let tag = tag.as_ref().to_owned();
    if let Err(text) = phase.allows(&body) {
        Reply::bad(text).write_tagged(&tag, out);
        return Prepared::Answered { unparsable: false };
    }
    // `$` (RFC 5182): the saved result, written into the typed command
    // (looked at only by a command that names it).
    let names_saved = saved_set || criteria.as_ref().is_some_and(|c| c.uses_saved());
    if let (true, Some(mailbox)) = (names_saved, saved) {
        let uids = mailbox.saved_uids();
        if let Some(c) = criteria.as_mut().filter(|c| c.uses_saved()) {
            // A search key matches messages, whichever numbers name them:
            // the key UID with the saved UIDs; an empty saved result
            // matches nothing.
            c.resolve_saved(
                seqset::to_sequence_set(&uids).map(imap_codec::imap_types::search::SearchKey::Uid),
            );
        }
        if saved_set {
            // FETCH, STORE, COPY, MOVE: UIDs after UID, else message
            // numbers. An empty saved result leaves nothing to do.
            let uid = matches!(
                body,
                CommandBody::Fetch { uid: true, .. }
                    | CommandBody::Store { uid: true, .. }
                    | CommandBody::Copy { uid: true, .. }
                    | CommandBody::Move { uid: true, .. }
                    | CommandBody::ExpungeUid { .. }
            );
            let numbers: Vec<u32> = if uid {
                uids
            } else {
                uids.iter()
                    .filter_map(|u| mailbox.seq_of(Uid(*u)).map(Seq::get))
                    .collect()
            };
            match seqset::to_sequence_set(&numbers) {
                Some(set) => {
                    parsed::set_sequence_set(&mut body, set);
                }
                None => {
                    Reply::ok("Nothing to do: the saved result is empty").write_tagged(&tag, out);
                    return Prepared::Answered { unparsable: false };
                }
            }
        }
    }
    Prepared::Run(Box::new(Ready {
        tag,
        body,
        esearch,
        criteria,
        binary_aliases,
    }))
}

/// An ACL command: parsed by [`crate::acl`], valid after a login.
fn prepare_acl(bytes: &[u8], phase: Phase, out: &mut Vec<u8>) -> Prepared {
    let (Some(tag), Some(command)) = (framing::tag_of(bytes), crate::acl::parse(bytes)) else {
        answer_unparsable(bytes, out);
        return Prepared::Answered { unparsable: true };
    };
    let refusal = match phase {
        Phase::Authenticated | Phase::Selected => None,
        Phase::NotAuthenticated => Some("Command not allowed before login"),
        Phase::Logout => Some("Command not allowed in this state"),
    };
    if let Some(text) = refusal {
        Reply::bad(text).write_tagged(tag, out);
        return Prepared::Answered { unparsable: false };
    }
    Prepared::Acl {
        tag: tag.to_owned(),
        command,
    }
}

/// Answers a command the grammar refuses: BAD with what was wrong (a
/// known command's arguments, an unknown name, no tag).
pub fn answer_unparsable(bytes: &[u8], out: &mut Vec<u8>) {
    match framing::tag_of(bytes) {
        Some(tag) => {
            let name = framing::command_name(bytes).unwrap_or_default();
            let text = if name.is_empty() {
                "Missing command".to_owned()
            } else if cmdparse::is_command_name(&name) {
                format!("Error in IMAP command {name}: invalid arguments")
            } else {
                // Echoed as letters, digits and `-._` only: 7-bit text
                // (RFC 3501 TEXT-CHAR) that cannot end the line as a
                // literal announcement (`{3}`) a client would wait on.
                let shown: String = name
                    .chars()
                    .take(40)
                    .map(|c| match c {
                        'A'..='Z' | '0'..='9' | '-' | '.' | '_' => c,
                        _ => '?',
                    })
                    .collect();
                format!("Unknown command {shown}")
            };
            Reply::bad_code(Code::ClientBug, text).write_tagged(tag, out);
        }
        None => out.extend_from_slice(b"* BAD Error in IMAP command: missing or invalid tag\r\n"),
    }
}

//! The framer: the client's byte stream cut into whole commands, with every
//! literal tracked, so that a literal's bytes are never read as a command.
//!
//! An IMAP command is one or more lines; a line that ends in `{n}`, `{n+}`
//! (RFC 3501 §4.3, RFC 7888 LITERAL+) or `~{n}` (RFC 3516 literal8) is
//! followed by exactly `n` octets and then the rest of the command. The
//! framer is sans-I/O: the driver feeds it the bytes it reads and asks it for
//! the next [`Event`]; when a literal is announced, the driver decides what
//! becomes of it ([`Framer::inline`], [`Framer::stream`], [`Framer::refuse`]).
//!
//! ```text
//!            line without literal                 ┌──────────────┐
//!   Idle ───────────────────────────────────────▶ │ Command(..)  │
//!    │ line ends in {n}                           └──────────────┘
//!    ▼
//!   Announced ──inline──▶ Inline(n) ──n bytes──▶ Line (rest of command)
//!      │  └──stream────▶ Stream(n) ──Chunk..──▶ Line
//!      └──refuse──▶ sync: Idle (client sends nothing)
//!                   non-sync: Discard(n) ──▶ DiscardLine ──▶ Idle
//! ```
//!
//! Rules that hold whatever the client sends:
//! - Every line and every command is bounded ([`FramerLimits`]): a longer
//!   one is read to its end and dropped, and reported as [`Event::TooLong`]
//!   once its command is over, never executed in part.
//! - Dropping a command also drops the literals it announces: a LITERAL+
//!   one is read and thrown away (up to [`FramerLimits::max_discard`], else
//!   [`Event::Fatal`]: the connection must close), a synchronising one ends
//!   the command, as the client waits for a `+` that never comes.
//! - A bare LF ends a line as CRLF does (Dovecot accepts it too); the
//!   command handed out always has CRLF.

/// How a literal was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralSync {
    /// `{n}`: the client waits for a `+` continuation.
    Sync,
    /// `{n+}` (LITERAL+): the data follows at once.
    NonSync,
}

/// The sizes the framer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerLimits {
    /// Longest line, line end included.
    pub max_line: usize,
    /// Longest command held in memory: lines and inline literals together
    /// (a streamed literal does not count).
    pub max_command: usize,
    /// Largest refused LITERAL+ literal that is read and dropped; a larger
    /// one makes the framer [`Event::Fatal`] (RFC 7888 §4 lets the server
    /// close the connection instead).
    pub max_discard: u64,
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralInfo {
    /// Octets that follow (`u64::MAX` when the number does not fit).
    pub len: u64,
    /// Whether the client waits for a `+` continuation.
    pub sync: LiteralSync,
    /// `~{n}`: a literal8, which may hold NUL (RFC 3516).
    pub binary: bool,
}

/// Why a command was dropped by the framer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLong {
    /// One line went past [`FramerLimits::max_line`].
    Line,
    /// The command went past [`FramerLimits::max_command`].
    Command,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Read more bytes and [`Framer::feed`] them.
    NeedInput,
    /// A literal is announced at the end of the command's latest line. The
    /// driver must call [`Framer::inline`], [`Framer::stream`] or
    /// [`Framer::refuse`] before asking for the next event.
    Literal {
        /// The literal.
        info: LiteralInfo,
        /// The command so far, up to and without the announcement (for the
        /// tag, the command name, or a trial parse of an APPEND).
        prefix: &'a [u8],
    },
    /// Bytes of a literal the driver chose to stream, in order; the literal
    /// is over when its length has been handed out.
    Chunk(&'a [u8]),
    /// A whole command: lines with CRLF and inline literals as sent; a
    /// streamed literal stands as `{0}`.
    Command(Vec<u8>),
    /// A command was dropped for its size, and has now been read to its end.
    TooLong {
        /// What was too long.
        what: TooLong,
        /// The command's tag, when its first line began with one.
        tag: Option<String>,
    },
    /// A refused LITERAL+ literal is larger than the framer will read to
    /// drop it: say BYE and close the connection.
    Fatal,
}

/// Where the framer is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the command (the first or one after a literal).
    Line,
    /// A literal was announced; waiting for the driver's decision.
    Announced(LiteralInfo),
    /// Copying this many literal bytes into the command.
    Inline(u64),
    /// Handing this many literal bytes to the driver.
    Stream(u64),
    /// Throwing away this many literal bytes of a dropped command.
    Discard(u64),
    /// Throwing away the rest of a line of a dropped command.
    DiscardLine,
    /// A dropped command ended: report it (or, when the driver already
    /// answered a refused literal, just start over).
    Dropped,
    /// The connection must close.
    Fatal,
}

/// How a command is being dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Drop {
    /// The driver refused a literal and has answered the command itself.
    Answered,
    /// The framer drops the command for its size and reports it at its end.
    TooLong(TooLong),
}

/// The sans-I/O framer of one connection. See the module documentation.
#[derive(Debug)]
pub struct Framer {
    limits: FramerLimits,
    /// Bytes fed and not yet framed. Invariant: `pos <= input.len()`.
    input: Vec<u8>,
    pos: usize,
    state: State,
    /// The command being assembled. Invariant: its length stays within
    /// `limits.max_command` (plus one line end while a line is checked).
    command: Vec<u8>,
    /// Where the current line starts in `command`.
    line_start: usize,
    /// Set while the current command is being dropped.
    dropping: Option<Drop>,
    /// The tag of a command being dropped for its size.
    dropped_tag: Option<String>,
    /// The last bytes of a line being thrown away, to find a literal
    /// announcement at its end. Invariant: at most [`TAIL`] bytes.
    tail: Vec<u8>,
}

/// How far into a command its tag is looked for (tags are at most 64
/// bytes, see [`crate::framing::tag_of`]).
const TAG_SCAN: usize = 66;

/// Longest possible announcement: `~{` + 20 digits + `+}` + CRLF, rounded up.
const TAIL: usize = 32;

impl Framer {
    /// A framer at the start of a stream.
    pub fn new(limits: FramerLimits) -> Framer {
        Framer {
            limits,
            input: Vec::new(),
            pos: 0,
            state: State::Line,
            command: Vec::new(),
            line_start: 0,
            dropping: None,
            dropped_tag: None,
            tail: Vec::new(),
        }
    }

    /// Adds bytes read from the client. Call it when [`Framer::next_event`] asked
    /// for input, so that what is held stays bounded by one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.input.len() / 2 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Whether bytes are waiting that have not been framed (the client
    /// pipelines).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.input.len()
    }

    /// The bytes fed and not yet framed, taken out (what a client
    /// pipelined after the command that hands its connection to a relay).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.pos);
        self.input = Vec::new();
        self.pos = 0;
        self.reset_command();
        rest
    }

    /// Drops everything fed and not yet framed, and any command begun: after
    /// STARTTLS, what came in the clear must not be taken as protected
    /// (RFC 3501 §6.2.1, RFC 2595 §3.1).
    pub fn discard_buffered(&mut self) {
        self.input = Vec::new();
        self.pos = 0;
        self.reset_command();
        self.command = Vec::new();
    }

    /// Gives back buffer memory after a large command, so that an idle
    /// connection stays small.
    pub fn shrink(&mut self) {
        if self.pos == self.input.len() && self.input.capacity() > 4096 {
            self.input = Vec::new();
            self.pos = 0;
        }
        if self.command.is_empty() && self.command.capacity() > 4096 {
            self.command = Vec::new();
        }
    }

    fn reset_command(&mut self) {
        self.state = State::Line;
        self.command.clear();
        self.line_start = 0;
        self.dropping = None;
        self.dropped_tag = None;
        self.tail.clear();
    }

    /// Reads one line as it is, outside any command (a SASL response, the
    /// `DONE` of IDLE), with its line end made CRLF. `Ok(None)`: more input
    /// is needed. Only valid between commands.
    ///
    /// # Errors
    /// [`TooLong::Line`] when the line is longer than the limit; it has
    /// then been read to its end and dropped.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, TooLong> {
        loop {
            match self.state {
                State::Line => {}
                State::DiscardLine => {
                    let avail = &self.input[self.pos..];
                    match avail.iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            self.pos += p + 1;
                            self.reset_command();
                            return Err(TooLong::Line);
                        }
                        None => {
                            self.pos = self.input.len();
                            return Ok(None);
                        }
                    }
                }
                // Raw lines are read between commands only.
                _ => return Ok(None),
            }
            let avail = &self.input[self.pos..];
            let room = self.limits.max_line.saturating_sub(self.command.len());
            match avail.iter().position(|&b| b == b'\n') {
                Some(p) if p < room => {
                    self.take_line(p);
                    let line = std::mem::take(&mut self.command);
                    self.reset_command();
                    return Ok(Some(line));
                }
                Some(_) => self.state = State::DiscardLine,
                None if avail.len() >= room => self.state = State::DiscardLine,
                None => {
                    self.command.extend_from_slice(avail);
                    self.pos = self.input.len();
                    return Ok(None);
                }
            }
            self.command.clear();
        }
    }

    /// The next thing the driver must do.
    pub fn next_event(&mut self) -> Event<'_> {
        loop {
            match self.state {
                State::Fatal => return Event::Fatal,
                State::Announced(info) => {
                    // The driver has not decided: ask again.
                    return Event::Literal {
                        info,
                        prefix: &self.command,
                    };
                }
                State::Line => match self.step_line() {
                    Step::Go => {}
                    Step::NeedInput => return Event::NeedInput,
                    Step::Command(c) => return Event::Command(c),
                },
                State::Inline(n) => {
                    let Some((bytes, left)) = self.take_literal(n) else {
                        return Event::NeedInput;
                    };
                    self.command.extend_from_slice(&self.input[bytes]);
                    self.state = self.after_literal(left, State::Inline(left));
                }
                State::Stream(n) => {
                    let Some((bytes, left)) = self.take_literal(n) else {
                        return Event::NeedInput;
                    };
                    self.state = self.after_literal(left, State::Stream(left));
                    return Event::Chunk(&self.input[bytes]);
                }
                State::Discard(n) => {
                    let Some((_, left)) = self.take_literal(n) else {
                        return Event::NeedInput;
                    };
                    self.state = if left == 0 {
                        self.tail.clear();
                        State::DiscardLine
                    } else {
                        State::Discard(left)
                    };
                }
                State::DiscardLine => {
                    let avail = &self.input[self.pos..];
                    match avail.iter().position(|&b| b == b'\n') {
                        None => {
                            keep_tail(&mut self.tail, avail);
                            self.pos = self.input.len();
                            return Event::NeedInput;
                        }
                        Some(p) => {
                            keep_tail(&mut self.tail, &avail[..=p]);
                            self.pos += p + 1;
                            match literal_at_end(&self.tail) {
                                None => self.state = State::Dropped,
                                Some((info, _)) => self.drop_literal(info),
                            }
                        }
                    }
                }
                State::Dropped => {
                    let drop = self.dropping.take();
                    let tag = self.dropped_tag.take();
                    self.reset_command();
                    if let Some(Drop::TooLong(what)) = drop {
                        return Event::TooLong { what, tag };
                    }
                }
            }
        }
    }

    /// Consumes up to `n` buffered literal bytes: where they are in the
    /// input and how many of the literal are left; `None` when nothing is
    /// buffered.
    fn take_literal(&mut self, n: u64) -> Option<(std::ops::Range<usize>, u64)> {
        let avail = self.input.len() - self.pos;
        if avail == 0 {
            return None;
        }
        let take = (avail as u64).min(n) as usize;
        let start = self.pos;
        self.pos += take;
        Some((start..start + take, n - take as u64))
    }

    /// The state after literal bytes were taken: the rest of the command's
    /// line once the literal is over, else `more`.
    fn after_literal(&mut self, left: u64, more: State) -> State {
        if left == 0 {
            self.line_start = self.command.len();
            State::Line
        } else {
            more
        }
    }

    /// A literal of a command being dropped: a synchronising one is never
    /// sent (no `+` comes), a LITERAL+ one is read and thrown away.
    fn drop_literal(&mut self, info: LiteralInfo) {
        self.tail.clear();
        self.state = match info.sync {
            LiteralSync::Sync => State::Dropped,
            LiteralSync::NonSync if info.len > self.limits.max_discard => State::Fatal,
            LiteralSync::NonSync => State::Discard(info.len),
        };
    }

    /// Starts dropping the current command for its size, at the current
    /// line, which is thrown away to its end.
    fn too_long(&mut self, what: TooLong) {
        // The tag may be cut between what was kept and what is buffered.
        let mut first: Vec<u8> = self.command.iter().take(TAG_SCAN).copied().collect();
        let more = TAG_SCAN - first.len();
        first.extend(self.input[self.pos..].iter().take(more));
        self.dropped_tag = crate::framing::tag_of(&first).map(str::to_owned);
        self.dropping = Some(Drop::TooLong(what));
        self.tail.clear();
        keep_tail(&mut self.tail, &self.command[self.line_start..]);
        self.command.clear();
        self.line_start = 0;
        self.state = State::DiscardLine;
    }

    /// Moves the buffered line whose LF is `lf` bytes ahead into the
    /// command, its line end made CRLF.
    fn take_line(&mut self, lf: usize) {
        let end = self.pos + lf;
        self.command.extend_from_slice(&self.input[self.pos..end]);
        self.pos = end + 1;
        if self.command.last() == Some(&b'\r') {
            self.command.pop();
        }
        self.command.extend_from_slice(b"\r\n");
    }

    /// Reads more of the current line.
    fn step_line(&mut self) -> Step {
        let avail = &self.input[self.pos..];
        let line_len = self.command.len() - self.line_start;
        let line_room = self.limits.max_line.saturating_sub(line_len);
        let cmd_room = self.limits.max_command.saturating_sub(self.command.len());
        let room = line_room.min(cmd_room);
        let what = if line_room <= cmd_room {
            TooLong::Line
        } else {
            TooLong::Command
        };
        match avail.iter().position(|&b| b == b'\n') {
            Some(p) if p < room => {
                self.take_line(p);
                let line = &self.command[self.line_start..];
                match literal_at_end(line) {
                    None => {
                        let cmd = std::mem::take(&mut self.command);
                        self.reset_command();
                        Step::Command(cmd)
                    }
                    Some((info, ann_len)) => {
                        let keep = self.command.len() - ann_len;
                        self.command.truncate(keep);
                        self.state = State::Announced(info);
                        Step::Go
                    }
                }
            }
            // The line is too long: drop it to its end, looking there for a
            // literal that must be dropped too.
            Some(_) => {
                self.too_long(what);
                Step::Go
            }
            None if avail.len() >= room => {
                self.too_long(what);
                Step::Go
            }
            None => {
                self.command.extend_from_slice(avail);
                self.pos = self.input.len();
                Step::NeedInput
            }
        }
    }

    fn announced(&self) -> Option<LiteralInfo> {
        match self.state {
            State::Announced(info) => Some(info),
            _ => None,
        }
    }

    /// Takes the announced literal into the command. Whether a `+` must be
    /// sent is the answer.
    ///
    /// # Errors
    /// [`TooLong::Command`] when the literal would make the command longer
    /// than the limit: it is then refused (as [`Framer::refuse`] does) and the
    /// driver must answer the command.
    pub fn inline(&mut self) -> Result<Continuation, TooLong> {
        let Some(info) = self.announced() else {
            return Ok(Continuation::None);
        };
        let room = self.limits.max_command.saturating_sub(self.command.len());
        if info.len > room as u64 {
            self.refuse();
            return Err(TooLong::Command);
        }
        self.restore_announcement(info);
        self.state = if info.len == 0 {
            self.line_start = self.command.len();
            State::Line
        } else {
            State::Inline(info.len)
        };
        Ok(continuation(info))
    }

    /// Hands the announced literal to the driver as [`Event::Chunk`]s; it
    /// stands as `{0}` (`~{0}` for a literal8) in the command.
    pub fn stream(&mut self) -> Continuation {
        let Some(info) = self.announced() else {
            return Continuation::None;
        };
        self.command
            .extend_from_slice(if info.binary { b"~{0}\r\n" } else { b"{0}\r\n" });
        self.state = if info.len == 0 {
            self.line_start = self.command.len();
            State::Line
        } else {
            State::Stream(info.len)
        };
        continuation(info)
    }

    /// Refuses the announced literal; the driver answers the command (for a
    /// synchronising literal before any `+`, as RFC 3501 §7.5 has it). The
    /// rest of the command, its literals included, is dropped.
    pub fn refuse(&mut self) {
        let Some(info) = self.announced() else {
            return;
        };
        self.command.clear();
        self.line_start = 0;
        self.dropping = Some(Drop::Answered);
        self.drop_literal(info);
    }

    /// Puts the announcement back into the command for the parser.
    fn restore_announcement(&mut self, info: LiteralInfo) {
        if info.binary {
            self.command.push(b'~');
        }
        self.command.push(b'{');
        self.command
            .extend_from_slice(info.len.to_string().as_bytes());
        if info.sync == LiteralSync::NonSync {
            self.command.push(b'+');
        }
        self.command.extend_from_slice(b"}\r\n");
    }
}

/// What reading a line came to.
#[derive(Debug)]
enum Step {
    /// The state changed: go on.
    Go,
    /// The line is not complete.
    NeedInput,
    /// The command is complete.
    Command(Vec<u8>),
}

/// Whether the driver must send a continuation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuation {
    /// Send `+ ...`: the client waits for it.
    Send,
    /// Nothing to send (LITERAL+, or no literal was pending).
    None,
}

fn continuation(info: LiteralInfo) -> Continuation {
    match info.sync {
        LiteralSync::Sync => Continuation::Send,
        LiteralSync::NonSync => Continuation::None,
    }
}

/// Keeps the last [`TAIL`] bytes of a line being dropped.
fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    if more.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&more[more.len() - TAIL..]);
        return;
    }
    tail.extend_from_slice(more);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

/// A literal announcement at the end of a line (which ends in LF), and the
/// length of the announcement with its line end. Any `{digits}` or
/// `{digits+}` there is one, however large the number: a number that does not
/// fit is `u64::MAX`, so that the literal is refused, never read as commands.
/// The one parser of announcements: the lexer and the tests' clients use it
/// too.
pub fn literal_at_end(line: &[u8]) -> Option<(LiteralInfo, usize)> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let eol = line.len() - body.len();
    let inner = body.strip_suffix(b"}")?;
    let (digits_part, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, LiteralSync::NonSync),
        None => (inner, LiteralSync::Sync),
    };
    let ndigits = digits_part
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if ndigits == 0 {
        return None;
    }
    let before = &digits_part[..digits_part.len() - ndigits];
    let before = before.strip_suffix(b"{")?;
    let binary = before.last() == Some(&b'~');
    let digits = &digits_part[digits_part.len() - ndigits..];
    let len = digits.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let ann_len =
        eol + 1 + ndigits + usize::from(sync == LiteralSync::NonSync) + 1 + usize::from(binary);
    Some((
        LiteralInfo {
            len: len.unwrap_or(u64::MAX),
            sync,
            binary,
        },
        ann_len,
    ))
}

#[cfg(test)]
mod tests;

//! Search criteria of SEARCH, SORT and THREAD, parsed without recursion.
//!
//! imap-codec parses search keys by recursion and refuses nesting deeper
//! than nine (`OR a OR b OR c ...` nests once per `OR`), so a Thunderbird
//! quick filter or a webmail "match any of twelve addresses" got BAD. Here
//! the structure of the criteria (parentheses, `OR`, `NOT`) is read with an
//! explicit stack into an arena ([`Criteria`]); each leaf key with its
//! arguments is handed to imap-codec on its own, so dates, sequence sets,
//! strings and literals keep the codec's grammar. Chains of `OR` and nested
//! lists are flattened into n-ary nodes, and every walk of the result
//! ([`Criteria::eval`], [`Criteria::leaves`]) is a loop, so no depth the
//! client chooses costs stack. What bounds the work is the number of keys
//! ([`Error::TooManyKeys`]), which the server configures.

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

use crate::lexer::{tokens, Token, TokenKind};

/// Index of a node in [`Criteria::nodes`].
pub type NodeId = usize;

/// One node of the criteria.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A key that is neither a list, `OR` nor `NOT`.
    Key(SearchKey<'static>),
    /// Every child matches (a parenthesised list, or the top level).
    And(Vec<NodeId>),
    /// Any child matches (a chain of `OR`).
    Or(Vec<NodeId>),
    /// The child does not match.
    Not(NodeId),
    /// `$` or `UID $` (RFC 5182): the messages of the session's saved
    /// search result, which the server writes in with
    /// [`Criteria::resolve_saved`] before evaluating (unresolved, it
    /// matches nothing).
    Saved,
}

/// Parsed criteria: nodes in an arena, the root last written.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    nodes: Vec<Node>,
    root: NodeId,
    /// Longest path from the root to a key, in nodes.
    depth: usize,
}

/// Why criteria were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not valid search criteria.
    #[error("invalid search criteria")]
    Syntax,
    /// More keys than the configured limit.
    #[error("too many search keys (at most {0})")]
    TooManyKeys(usize),
}

/// Search keys followed by one argument (RFC 3501 §6.4.4, RFC 5032
/// OLDER/YOUNGER).
pub(crate) const ONE_ARG: &[&str] = &[
    "BCC",
    "BEFORE",
    "BODY",
    "CC",
    "FROM",
    "KEYWORD",
    "LARGER",
    "ON",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SINCE",
    "SMALLER",
    "SUBJECT",
    "TEXT",
    "TO",
    "UID",
    "UNKEYWORD",
    "OLDER",
    "YOUNGER",
];

/// A structure being read: what the parser waits for.
enum Open {
    /// A list of keys: the top level (`paren` false) or a parenthesised one.
    List { paren: bool, children: Vec<NodeId> },
    /// An `OR` waiting for its first or second key.
    Or(Option<NodeId>),
    /// A `NOT` waiting for its key.
    Not,
}

struct Builder {
    nodes: Vec<Node>,
    depth: Vec<usize>,
}

impl Builder {
    fn push(&mut self, node: Node, depth: usize) -> NodeId {
        self.nodes.push(node);
        self.depth.push(depth);
        self.nodes.len() - 1
    }

    /// The children of `id` when it is a node of the kind being built
    /// (taken out of the arena: the emptied node is unreachable).
    fn take_same(&mut self, id: NodeId, or: bool) -> Option<Vec<NodeId>> {
        match &mut self.nodes[id] {
            Node::Or(ch) if or => Some(std::mem::take(ch)),
            Node::And(ch) if !or => Some(std::mem::take(ch)),
            _ => None,
        }
    }

    fn list(&mut self, children: Vec<NodeId>, or: bool) -> NodeId {
        if let [only] = children[..] {
            return only;
        }
        // The largest child of the same kind lends its vector and the rest
        // join it, so a chain of a thousand ORs is built in linear time.
        // Order within a list does not change what matches.
        let base = children
            .iter()
            .copied()
            .filter(|&c| match &self.nodes[c] {
                Node::Or(_) => or,
                Node::And(_) => !or,
                _ => false,
            })
            .max_by_key(|&c| match &self.nodes[c] {
                Node::Or(ch) | Node::And(ch) => ch.len(),
                _ => 0,
            });
        let mut flat = match base {
            Some(b) => self.take_same(b, or).unwrap_or_default(),
            None => Vec::with_capacity(children.len()),
        };
        for c in children {
            if Some(c) == base {
                continue;
            }
            match self.take_same(c, or) {
                Some(mut ch) => flat.append(&mut ch),
                None => flat.push(c),
            }
        }
        let depth = 1 + flat.iter().map(|&c| self.depth[c]).max().unwrap_or(0);
        self.push(if or { Node::Or(flat) } else { Node::And(flat) }, depth)
    }

    fn not(&mut self, child: NodeId) -> NodeId {
        if let Node::Not(inner) = self.nodes[child] {
            return inner;
        }
        let depth = 1 + self.depth[child];
        self.push(Node::Not(child), depth)
    }
}

/// A key without arguments, read without the codec (the common case of a
/// long chain).
fn flag_key(word: &[u8]) -> Option<SearchKey<'static>> {
    use SearchKey as K;
    Some(match word.to_ascii_uppercase().as_slice() {
        b"ALL" => K::All,
        b"ANSWERED" => K::Answered,
        b"DELETED" => K::Deleted,
        b"DRAFT" => K::Draft,
        b"FLAGGED" => K::Flagged,
        b"NEW" => K::New,
        b"OLD" => K::Old,
        b"RECENT" => K::Recent,
        b"SEEN" => K::Seen,
        b"UNANSWERED" => K::Unanswered,
        b"UNDELETED" => K::Undeleted,
        b"UNDRAFT" => K::Undraft,
        b"UNFLAGGED" => K::Unflagged,
        b"UNSEEN" => K::Unseen,
        _ => return None,
    })
}

/// Parses one leaf key (a keyword and its arguments, or a sequence set)
/// with imap-codec.
fn leaf(bytes: &[u8]) -> Result<SearchKey<'static>, Error> {
    if let Some(k) = flag_key(bytes) {
        return Ok(k);
    }
    let mut cmd = Vec::with_capacity(bytes.len() + 12);
    cmd.extend_from_slice(b"a SEARCH ");
    cmd.extend_from_slice(bytes);
    cmd.extend_from_slice(b"\r\n");
    let (rest, parsed) = CommandCodec::default()
        .decode(&cmd)
        .map_err(|_| Error::Syntax)?;
    if !rest.is_empty() {
        return Err(Error::Syntax);
    }
    match parsed.body {
        CommandBody::Search { criteria, .. } => {
            let mut keys = criteria.into_inner();
            match (keys.pop(), keys.is_empty()) {
                (Some(k), true) => Ok(k.into_static()),
                _ => Err(Error::Syntax),
            }
        }
        _ => Err(Error::Syntax),
    }
}

/// Whether a key's text is `$` or `UID $`: the saved result (RFC 5182
/// §2.1), a key of its own here, which the codec does not know.
fn is_saved_key(text: &[u8]) -> bool {
    if text == b"$" {
        return true;
    }
    text.len() == 5 && text[..4].eq_ignore_ascii_case(b"UID ") && text[4] == b'$'
}

/// How many argument tokens follow the key at `toks[i]`; `None` for a word
/// that is no key.
fn arity(bytes: &[u8], toks: &[Token], i: usize) -> Option<usize> {
    let t = &toks[i];
    if t.kind != TokenKind::Atom {
        return None;
    }
    let word = String::from_utf8_lossy(&bytes[t.range.clone()]).to_ascii_uppercase();
    let first = word.as_bytes().first().copied()?;
    if first.is_ascii_digit() || first == b'*' || first == b'$' {
        return Some(0);
    }
    match word.as_str() {
        _ if flag_key(word.as_bytes()).is_some() => Some(0),
        w if ONE_ARG.contains(&w) => Some(1),
        "HEADER" => Some(2),
        // MODSEQ "/flags/\\draft" all 620162338, or MODSEQ 620162338.
        "MODSEQ" => Some(
            if toks.get(i + 1).map(|t| t.kind) == Some(TokenKind::Quoted) {
                3
            } else {
                1
            },
        ),
        _ => None,
    }
}

impl Criteria {
    /// Parses `bytes`, the criteria of a command (from its first key to its
    /// line end), allowing at most `max_keys` keys.
    ///
    /// # Errors
    /// [`Error::Syntax`] for what is not search criteria,
    /// [`Error::TooManyKeys`] past `max_keys`.
    pub fn parse(bytes: &[u8], max_keys: usize) -> Result<Criteria, Error> {
        let toks = tokens(bytes);
        let mut b = Builder {
            nodes: Vec::new(),
            depth: Vec::new(),
        };
        let mut stack = vec![Open::List {
            paren: false,
            children: Vec::new(),
        }];
        let mut keys = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let t = &toks[i];
            let mut done = match t.kind {
                TokenKind::Open => {
                    stack.push(Open::List {
                        paren: true,
                        children: Vec::new(),
                    });
                    i += 1;
                    continue;
                }
                TokenKind::Close => match stack.pop() {
                    Some(Open::List {
                        paren: true,
                        children,
                    }) if !children.is_empty() => {
                        i += 1;
                        b.list(children, false)
                    }
                    _ => return Err(Error::Syntax),
                },
                _ => {
                    let word = &bytes[t.range.clone()];
                    if t.kind == TokenKind::Atom && word.eq_ignore_ascii_case(b"OR") {
                        stack.push(Open::Or(None));
                        i += 1;
                        continue;
                    }
                    if t.kind == TokenKind::Atom && word.eq_ignore_ascii_case(b"NOT") {
                        stack.push(Open::Not);
                        i += 1;
                        continue;
                    }
                    let n = arity(bytes, &toks, i).ok_or(Error::Syntax)?;
                    let last = toks.get(i + n).ok_or(Error::Syntax)?;
                    if toks[i + 1..=i + n]
                        .iter()
                        .any(|a| matches!(a.kind, TokenKind::Open | TokenKind::Close))
                    {
                        return Err(Error::Syntax);
                    }
                    keys += 1;
                    if keys > max_keys {
                        return Err(Error::TooManyKeys(max_keys));
                    }
                    let text = &bytes[t.range.start..last.range.end];
                    i += n + 1;
                    if is_saved_key(text) {
                        b.push(Node::Saved, 1)
                    } else {
                        b.push(Node::Key(leaf(text)?), 1)
                    }
                }
            };
            // Hand the finished node to what waits for it, finishing
            // operators that now have all their keys.
            loop {
                match stack.last_mut() {
                    Some(Open::List { children, .. }) => {
                        children.push(done);
                        break;
                    }
                    Some(Open::Or(first @ None)) => {
                        *first = Some(done);
                        break;
                    }
                    Some(Open::Or(Some(first))) => {
                        let first = *first;
                        stack.pop();
                        done = b.list(vec![first, done], true);
                    }
                    Some(Open::Not) => {
                        stack.pop();
                        done = b.not(done);
                    }
                    None => return Err(Error::Syntax),
                }
            }
        }
        match stack.pop() {
            Some(Open::List {
                paren: false,
                children,
            }) if stack.is_empty() && !children.is_empty() => {
                let root = b.list(children, false);
                let depth = b.depth[root];
                Ok(Criteria {
                    nodes: b.nodes,
                    root,
                    depth,
                })
            }
            _ => Err(Error::Syntax),
        }
    }

    /// Criteria of the one key `key`.
    pub fn single(key: SearchKey<'static>) -> Criteria {
        Criteria {
            nodes: vec![Node::Key(key)],
            root: 0,
            depth: 1,
        }
    }

    /// Whether `$` is among the keys.
    pub fn uses_saved(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n, Node::Saved))
    }

    /// Writes the session's saved result in place of every `$`: `set`, the
    /// key that matches its messages (`UID 4:7,9`), or, for an empty saved
    /// result, a key matching nothing (RFC 5182 §2.1).
    pub fn resolve_saved(&mut self, set: Option<SearchKey<'static>>) {
        let saved: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i], Node::Saved))
            .collect();
        if saved.is_empty() {
            return;
        }
        let replacement = match set {
            Some(key) => Node::Key(key),
            None => {
                self.nodes.push(Node::Key(SearchKey::All));
                // One level more below each `$`.
                self.depth += 1;
                Node::Not(self.nodes.len() - 1)
            }
        };
        for i in saved {
            self.nodes[i] = replacement.clone();
        }
    }

    /// The root node.
    pub fn root(&self) -> NodeId {
        self.root
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Longest path from the root to a key.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Every key (in no particular order).
    pub fn leaves(&self) -> impl Iterator<Item = &SearchKey<'static>> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Key(k) => Some(k),
            _ => None,
        })
    }

    /// Evaluates the criteria for one message, `key` deciding each key;
    /// `AND` and `OR` stop at their first decisive child, as a recursive
    /// evaluation would, but on `scratch` instead of the call stack.
    pub fn eval(
        &self,
        scratch: &mut Frames<bool>,
        key: impl FnMut(&SearchKey<'static>) -> bool,
    ) -> bool {
        self.fold(
            scratch,
            key,
            |and| and,
            |a, v, or| {
                if or {
                    *a |= v
                } else {
                    *a &= v
                }
            },
            |v| *v = !*v,
            |v, or| *v == or,
        )
    }

    /// Walks the criteria bottom-up with an explicit stack (`frames`), no
    /// recursion: `leaf` gives a key's value, `identity(is_and)` that of an
    /// empty list, `join(acc, child, is_or)` folds a child into its list,
    /// `negate` applies a NOT, and a list stops at the first child after
    /// which `decided(acc, is_or)` holds. [`Criteria::eval`] is this on one
    /// message; the server also folds vectors of all messages at once.
    pub fn fold<T>(
        &self,
        frames: &mut Frames<T>,
        mut leaf: impl FnMut(&SearchKey<'static>) -> T,
        identity: impl Fn(bool) -> T,
        mut join: impl FnMut(&mut T, T, bool),
        mut negate: impl FnMut(&mut T),
        decided: impl Fn(&T, bool) -> bool,
    ) -> T {
        frames.clear();
        let mut node = self.root;
        loop {
            // Down to a key, remembering each operator passed.
            let mut value = loop {
                match &self.nodes[node] {
                    Node::Key(k) => break leaf(k),
                    // Not resolved: no message is in it.
                    Node::Saved => break identity(false),
                    Node::And(ch) | Node::Or(ch) => match ch.first() {
                        Some(&c) => {
                            frames.push((node, 1, None));
                            node = c;
                        }
                        // An empty list (never parsed; merged away).
                        None => break identity(matches!(self.nodes[node], Node::And(_))),
                    },
                    Node::Not(c) => {
                        frames.push((node, 0, None));
                        node = *c;
                    }
                }
            };
            // Up while operators are decided; down again into the next
            // child of the first that is not.
            loop {
                let Some((op, next, acc)) = frames.last_mut() else {
                    return value;
                };
                match &self.nodes[*op] {
                    Node::Not(_) => {
                        negate(&mut value);
                        frames.pop();
                    }
                    Node::And(ch) | Node::Or(ch) => {
                        let or = matches!(self.nodes[*op], Node::Or(_));
                        if let Some(mut a) = acc.take() {
                            join(&mut a, value, or);
                            value = a;
                        }
                        if *next >= ch.len() || decided(&value, or) {
                            frames.pop();
                        } else {
                            node = ch[*next];
                            *next += 1;
                            *acc = Some(value);
                            break;
                        }
                    }
                    Node::Key(_) | Node::Saved => {
                        frames.pop();
                    }
                }
            }
        }
    }
}

/// The stack of [`Criteria::fold`]: each open operator, the next child to
/// visit and what its children folded to so far. Kept by the caller so a
/// search of many messages allocates it once.
pub type Frames<T> = Vec<(NodeId, usize, Option<T>)>;

/// A SEARCH, SORT or THREAD command split where its criteria begin: the
/// command with its criteria replaced by `ALL` (for imap-codec to parse the
/// rest) and the criteria. `Ok(None)` for any other command, or one whose
/// criteria are missing (the codec refuses it).
///
/// # Errors
/// [`Error`] for criteria that do not parse or hold too many keys.
pub fn split_command(bytes: &[u8], max_keys: usize) -> Result<Option<(Vec<u8>, Criteria)>, Error> {
    // Every command passes here: the others are told apart by their name
    // before any tokenising.
    let name = crate::framing::command_name(bytes).unwrap_or_default();
    if !["SEARCH", "SORT", "THREAD"]
        .iter()
        .any(|n| name.ends_with(n))
    {
        return Ok(None);
    }
    let toks = tokens(bytes);
    let word = |i: usize| -> Option<String> {
        toks.get(i)
            .filter(|t| t.kind == TokenKind::Atom)
            .map(|t| String::from_utf8_lossy(&bytes[t.range.clone()]).to_ascii_uppercase())
    };
    let mut i = 1;
    if word(i).as_deref() == Some("UID") {
        i += 1;
    }
    let name = word(i).unwrap_or_default();
    i += 1;
    match name.as_str() {
        "SEARCH" => {
            if word(i).as_deref() == Some("CHARSET") {
                i += 2;
            }
        }
        "SORT" => {
            // The sort criteria in parentheses, then the charset.
            if toks.get(i).map(|t| t.kind) != Some(TokenKind::Open) {
                return Ok(None);
            }
            while toks.get(i).is_some_and(|t| t.kind != TokenKind::Close) {
                i += 1;
            }
            i += 2;
        }
        // The algorithm, then the charset.
        "THREAD" => i += 2,
        _ => return Ok(None),
    }
    let Some(first) = toks.get(i) else {
        return Ok(None);
    };
    let start = first.range.start;
    // The criteria end where the line does (the framer hands whole
    // commands: the last line end is the command's).
    let end = crate::framing::strip_eol(bytes).len();
    if end <= start {
        return Ok(None);
    }
    let criteria = Criteria::parse(&bytes[start..end], max_keys)?;
    let mut head = bytes[..start].to_vec();
    head.extend_from_slice(b"ALL\r\n");
    Ok(Some((head, criteria)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(c: &Criteria, seen: bool, flagged: bool, uid: u32) -> bool {
        let mut scratch = Vec::new();
        c.eval(&mut scratch, |k| match k {
            SearchKey::Seen => seen,
            SearchKey::Flagged => flagged,
            SearchKey::Larger(n) => uid > *n,
            SearchKey::All => true,
            _ => false,
        })
    }

    #[test]
    fn structure_is_read_as_imap_codec_reads_it() {
        let c = Criteria::parse(b"OR SEEN FLAGGED", 100).unwrap();
        assert!(matches(&c, true, false, 0));
        assert!(matches(&c, false, true, 0));
        assert!(!matches(&c, false, false, 0));
        let c = Criteria::parse(b"NOT SEEN FLAGGED", 100).unwrap();
        assert!(matches(&c, false, true, 0));
        assert!(!matches(&c, true, true, 0));
        let c = Criteria::parse(b"NOT (SEEN FLAGGED)", 100).unwrap();
        assert!(matches(&c, true, false, 0));
        assert!(!matches(&c, true, true, 0));
        let c = Criteria::parse(b"NOT NOT SEEN", 100).unwrap();
        assert!(matches(&c, true, false, 0));
        let c = Criteria::parse(b"OR (SEEN FLAGGED) LARGER 5", 100).unwrap();
        assert!(matches(&c, true, true, 0));
        assert!(matches(&c, false, false, 6));
        assert!(!matches(&c, true, false, 4));
    }

    #[test]
    fn leaves_keep_the_codecs_grammar() {
        let c = Criteria::parse(
            b"SUBJECT {3}\r\nabc HEADER X-A \"b c\" 1:3,5 UID 2:* SINCE 1-Feb-2024 MODSEQ 5",
            100,
        )
        .unwrap();
        let keys: Vec<String> = c.leaves().map(|k| format!("{k:?}")).collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(keys[0].contains("Subject"));
        assert!(keys[1].contains("Header"));
        assert!(keys[2].contains("SequenceSet"));
        assert!(keys[3].contains("Uid"));
        assert!(keys[4].contains("Since"));
        assert!(keys[5].contains("ModSequence"));
        let c = Criteria::parse(b"MODSEQ \"/flags/\\\\draft\" all 620162338", 100).unwrap();
        assert_eq!(c.leaves().count(), 1);
    }

    #[test]
    fn the_saved_result_is_a_key_of_its_own() {
        let mut c = Criteria::parse(b"OR $ SEEN NOT (UID $ FLAGGED)", 10).unwrap();
        assert!(c.uses_saved());
        // Unresolved, `$` matches nothing.
        assert!(!matches(&c, false, false, 7));
        assert!(matches(&c, true, false, 7));
        let set = imap_codec::imap_types::sequence::SequenceSet::try_from("7").unwrap();
        let mut empty = c.clone();
        c.resolve_saved(Some(SearchKey::Uid(set)));
        assert!(!c.uses_saved());
        assert_eq!(
            c.leaves()
                .filter(|k| matches!(k, SearchKey::Uid(_)))
                .count(),
            2
        );
        // An empty saved result: a key that matches nothing.
        empty.resolve_saved(None);
        assert!(!empty.uses_saved());
        assert!(!matches(&empty, false, false, 7));
        assert!(
            matches(&empty, true, true, 7),
            "NOT (nothing AND FLAGGED) holds"
        );
        // `$` quoted or as another key's argument is text.
        let q = Criteria::parse(b"SUBJECT $ BODY \"$\"", 10).unwrap();
        assert!(!q.uses_saved());
    }

    #[test]
    fn bad_criteria_are_refused() {
        for bad in [
            &b"OR SEEN"[..],
            b"NOT",
            b"(SEEN",
            b"SEEN)",
            b"()",
            b"BOGUS",
            b"SUBJECT",
            b"HEADER X",
            b"LARGER x",
            b"SINCE 33-Foo-2020",
            b"SUBJECT (x)",
            b"\"SEEN\"",
        ] {
            assert_eq!(
                Criteria::parse(bad, 100),
                Err(Error::Syntax),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            Criteria::parse(b"SEEN SEEN SEEN", 2),
            Err(Error::TooManyKeys(2))
        );
    }

    #[test]
    fn chains_thousands_deep_are_flat_and_cost_no_stack() {
        let n = 5_000;
        let mut q = "OR SEEN ".repeat(n);
        q.push_str("FLAGGED");
        let c = Criteria::parse(q.as_bytes(), 100_000).unwrap();
        assert_eq!(c.depth(), 2, "an OR chain is one n-ary OR");
        assert!(matches(&c, false, true, 0));
        assert!(!matches(&c, false, false, 0));
        // Alternating operators cannot be flattened; evaluation still
        // loops, on a thread with a small stack.
        let mut q = "NOT (OR LARGER 1 ".repeat(n);
        q.push_str("SEEN");
        q.push_str(&")".repeat(n));
        let c = Criteria::parse(q.as_bytes(), 100_000).unwrap();
        assert!(c.depth() > n);
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                [
                    matches(&c, true, false, 0),
                    matches(&c, false, false, 0),
                    matches(&c, true, false, 2),
                ]
            })
            .unwrap()
            .join()
            .unwrap();
        // n is even: with LARGER 1 false the NOTs cancel out; with it true
        // the outermost NOT makes it false.
        assert_eq!(r, [true, false, false]);
    }

    #[test]
    fn commands_are_split_where_criteria_begin() {
        let (head, c) = split_command(b"a UID SEARCH CHARSET UTF-8 OR SEEN FLAGGED\r\n", 10)
            .unwrap()
            .unwrap();
        assert_eq!(head, b"a UID SEARCH CHARSET UTF-8 ALL\r\n");
        assert_eq!(c.leaves().count(), 2);
        let (head, _) = split_command(b"a SORT (REVERSE DATE) UTF-8 NOT SEEN\r\n", 10)
            .unwrap()
            .unwrap();
        assert_eq!(head, b"a SORT (REVERSE DATE) UTF-8 ALL\r\n");
        let (head, _) = split_command(b"a THREAD REFERENCES US-ASCII (SEEN)\r\n", 10)
            .unwrap()
            .unwrap();
        assert_eq!(head, b"a THREAD REFERENCES US-ASCII ALL\r\n");
        assert!(split_command(b"a FETCH 1 FLAGS\r\n", 10).unwrap().is_none());
        assert!(split_command(b"a SEARCH\r\n", 10).unwrap().is_none());
        assert!(split_command(b"a SEARCH BOGUS\r\n", 10).is_err());
    }
}

//! THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES, over what the server
//! extracted from each message, and the `* THREAD` formatting.
//!
//! REFERENCES follows the RFC's steps in order (link the References chains
//! without loops, gather the root set, prune empty containers, sort, merge
//! threads by base subject, sort siblings). Ties of sent dates fall back to
//! the mailbox order, as the RFC asks.

use std::fmt::Write as _;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// Threads deeper than this are cut (the message starts a new thread): the
/// tree is walked recursively, and a crafted mailbox must not exhaust the
/// stack. Real conversations are far shallower.
pub const MAX_DEPTH: usize = 1000;

/// What threading needs of one message, borrowed from its summary (a
/// THREAD of a large folder copies no strings).
#[derive(Debug, Clone)]
pub struct ThreadMessage<'a> {
    /// The number to print (sequence number or UID).
    pub id: u32,
    /// `<id>` of Message-ID, without the brackets, if valid.
    pub message_id: Option<&'a str>,
    /// Message-IDs of References, else the first of In-Reply-To,
    /// separated by spaces (as `summary::Summary::references` keeps them).
    pub references: &'a str,
    /// The base subject (RFC 5256 §2.1) in i;unicode-casemap form, as
    /// subjects are compared (`summary::Summary::subject_key`).
    pub subject_key: &'a str,
    /// The subject marked a reply or forward.
    pub is_reply: bool,
    /// Sent date (Date header, else INTERNALDATE), seconds since the epoch.
    pub sent: i64,
}

/// A node of a thread: a message (index into the input) or an empty
/// container that holds siblings together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Index into the input messages; `None` for an empty container.
    pub msg: Option<usize>,
    /// Replies.
    pub children: Vec<Node>,
}

/// The Message-IDs in a header value, in order, without brackets.
pub fn message_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let id: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !id.is_empty() && !id.contains('<') {
            out.push(id);
        }
        rest = &after[end + 1..];
    }
    out
}

/// ORDEREDSUBJECT: messages grouped by base subject; the first (by sent
/// date) of each group is the parent of the others.
pub fn ordered_subject(msgs: &[ThreadMessage]) -> Vec<Node> {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_unstable_by_key(|&i| (msgs[i].subject_key, msgs[i].sent, i));
    let mut threads: Vec<Node> = Vec::new();
    let mut last_subject: Option<&str> = None;
    for i in order {
        let subj = msgs[i].subject_key;
        match (last_subject, threads.last_mut()) {
            (Some(s), Some(t)) if s == subj => t.children.push(Node {
                msg: Some(i),
                children: Vec::new(),
            }),
            _ => {
                threads.push(Node {
                    msg: Some(i),
                    children: Vec::new(),
                });
                last_subject = Some(subj);
            }
        }
    }
    threads.sort_by_key(|t| t.msg.map(|m| (msgs[m].sent, m)).unwrap_or((0, 0)));
    threads
}

/// A container of the REFERENCES algorithm.
#[derive(Debug, Default, Clone)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Arena {
    c: Vec<Container>,
}

impl Arena {
    fn new_container(&mut self) -> usize {
        self.c.push(Container::default());
        self.c.len() - 1
    }

    /// True if `a` is `b` or one of `b`'s ancestors... walking up from `b`.
    fn is_ancestor_or_self(&self, a: usize, b: usize) -> bool {
        let mut cur = Some(b);
        let mut steps = 0;
        while let Some(x) = cur {
            if x == a {
                return true;
            }
            cur = self.c[x].parent;
            steps += 1;
            if steps > self.c.len() {
                return true; // defensive: never loop
            }
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    fn depth(&self, mut c: usize) -> usize {
        let mut d = 0;
        while let Some(p) = self.c[c].parent {
            d += 1;
            c = p;
            if d > MAX_DEPTH {
                break;
            }
        }
        d
    }

    /// Makes `parent` the parent of `child` unless that would make a loop
    /// or a thread deeper than [`MAX_DEPTH`].
    fn link(&mut self, parent: usize, child: usize) -> bool {
        if self.is_ancestor_or_self(child, parent) || self.depth(parent) >= MAX_DEPTH {
            return false;
        }
        self.unlink(child);
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
        true
    }
}

/// REFERENCES threading.
pub fn references(msgs: &[ThreadMessage]) -> Vec<Node> {
    let mut arena = Arena { c: Vec::new() };
    let mut by_id: HashMap<&str, usize> = HashMap::default();
    // (1) Link the References chains and each message to its last reference.
    for (i, m) in msgs.iter().enumerate() {
        // A missing or duplicate Message-ID gets a container of its own.
        let own = match m.message_id {
            Some(id) => match by_id.get(id) {
                Some(&c) if arena.c[c].msg.is_none() => Some(c),
                Some(_) => None,
                None => {
                    let c = arena.new_container();
                    by_id.insert(id, c);
                    Some(c)
                }
            },
            None => None,
        };
        let own = own.unwrap_or_else(|| arena.new_container());
        arena.c[own].msg = Some(i);
        let mut prev: Option<usize> = None;
        for r in m.references.split(' ').filter(|r| !r.is_empty()) {
            let c = match by_id.get(r) {
                Some(&c) => c,
                None => {
                    let c = arena.new_container();
                    by_id.insert(r, c);
                    c
                }
            };
            if let Some(p) = prev {
                // An existing link is kept (step 1.A).
                if arena.c[c].parent.is_none() && p != c {
                    arena.link(p, c);
                }
            }
            prev = Some(c);
        }
        // (1.C) The last reference is the parent; a wrong one is replaced.
        arena.unlink(own);
        if let Some(p) = prev {
            if p != own {
                arena.link(p, own);
            }
        }
    }
    // (2) The root set; (3) the table is no longer needed.
    drop(by_id);
    let roots: Vec<usize> = (0..arena.c.len())
        .filter(|&i| arena.c[i].parent.is_none())
        .collect();
    // (4) Prune empty containers.
    let roots = prune(&mut arena, roots, true);
    // (5) Sort the root set by sent date.
    let mut roots = roots;
    sort_siblings(&mut arena, &mut roots, msgs);
    // (6) Merge threads with the same base subject.
    let roots = merge_subjects(&mut arena, roots, msgs);
    // (7) Sort every set of siblings.
    let mut roots = roots;
    sort_siblings(&mut arena, &mut roots, msgs);
    roots.iter().map(|&r| to_node(&arena, r)).collect()
}

fn prune(arena: &mut Arena, list: Vec<usize>, at_root: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let kids = std::mem::take(&mut arena.c[c].children);
        let kids = prune(arena, kids, false);
        if arena.c[c].msg.is_none() {
            if kids.is_empty() {
                continue;
            }
            if !at_root || kids.len() == 1 {
                let parent = arena.c[c].parent;
                for &k in &kids {
                    arena.c[k].parent = parent;
                }
                out.extend(kids);
                continue;
            }
        }
        arena.c[c].children = kids;
        out.push(c);
    }
    out
}

/// The sort key of a container: its message's date and position, or for
/// an empty container those of its first child (children sorted first).
fn sort_key(arena: &Arena, c: usize, msgs: &[ThreadMessage]) -> (i64, usize) {
    match arena.c[c].msg {
        Some(m) => (msgs[m].sent, m),
        None => arena.c[c]
            .children
            .first()
            .map(|&k| sort_key(arena, k, msgs))
            .unwrap_or((i64::MAX, usize::MAX)),
    }
}

/// Sorts the children of every container under `list`, deepest first,
/// then `list` itself.
fn sort_siblings(arena: &mut Arena, list: &mut [usize], msgs: &[ThreadMessage]) {
    for &c in list.iter() {
        let mut kids = std::mem::take(&mut arena.c[c].children);
        sort_siblings(arena, &mut kids, msgs);
        arena.c[c].children = kids;
    }
    list.sort_by_cached_key(|&c| sort_key(arena, c, msgs));
}

fn thread_subject<'a>(arena: &Arena, c: usize, msgs: &[ThreadMessage<'a>]) -> Option<&'a str> {
    let m = match arena.c[c].msg {
        Some(m) => m,
        None => arena.c[c].children.first().and_then(|&k| arena.c[k].msg)?,
    };
    let s = msgs[m].subject_key;
    (!s.is_empty()).then_some(s)
}

fn is_reply(arena: &Arena, c: usize, msgs: &[ThreadMessage]) -> bool {
    arena.c[c].msg.is_some_and(|m| msgs[m].is_reply)
}

fn merge_subjects(arena: &mut Arena, roots: Vec<usize>, msgs: &[ThreadMessage]) -> Vec<usize> {
    // (6.B) One container per base subject (compared case-insensitively).
    let mut table: HashMap<&str, usize> = HashMap::default();
    for &c in &roots {
        let Some(key) = thread_subject(arena, c, msgs) else {
            continue;
        };
        match table.get(&key) {
            None => {
                table.insert(key, c);
            }
            Some(&t) => {
                let t_dummy = arena.c[t].msg.is_none();
                let c_dummy = arena.c[c].msg.is_none();
                if !t_dummy && (c_dummy || (is_reply(arena, t, msgs) && !is_reply(arena, c, msgs)))
                {
                    table.insert(key, c);
                }
            }
        }
    }
    // (6.C) Merge the other roots of each subject into the table's one.
    let mut out: Vec<usize> = Vec::with_capacity(roots.len());
    let mut removed: Vec<bool> = vec![false; arena.c.len()];
    let mut replaced: HashMap<usize, usize> = HashMap::default();
    for &c in &roots {
        let Some(key) = thread_subject(arena, c, msgs) else {
            out.push(c);
            continue;
        };
        let Some(&t) = table.get(&key) else {
            out.push(c);
            continue;
        };
        if t == c {
            out.push(c);
            continue;
        }
        let t_dummy = arena.c[t].msg.is_none();
        let c_dummy = arena.c[c].msg.is_none();
        if t_dummy && c_dummy {
            let kids = std::mem::take(&mut arena.c[c].children);
            for &k in &kids {
                arena.c[k].parent = Some(t);
            }
            arena.c[t].children.extend(kids);
            removed[c] = true;
        } else if t_dummy || (is_reply(arena, c, msgs) && !is_reply(arena, t, msgs)) {
            arena.c[c].parent = Some(t);
            arena.c[t].children.push(c);
            removed[c] = true;
        } else {
            let d = arena.new_container();
            removed.push(false);
            arena.c[d].children = vec![t, c];
            arena.c[t].parent = Some(d);
            arena.c[c].parent = Some(d);
            removed[c] = true;
            // The table's container is replaced by the new one where it
            // stands in the root list.
            replaced.insert(t, d);
            table.insert(key, d);
        }
    }
    // A root replaced by a new empty container appears once, where the
    // root stood.
    let mut seen = HashSet::default();
    out.into_iter()
        .filter(|&c| !removed[c])
        .map(|mut c| {
            while let Some(&d) = replaced.get(&c) {
                c = d;
            }
            c
        })
        .filter(|&c| seen.insert(c))
        .collect()
}

fn to_node(arena: &Arena, c: usize) -> Node {
    Node {
        msg: arena.c[c].msg,
        children: arena.c[c]
            .children
            .iter()
            .map(|&k| to_node(arena, k))
            .collect(),
    }
}

/// `(1 2 (3)(4))(5)`: the THREAD response after `* THREAD `.
pub fn format(threads: &[Node], msgs: &[ThreadMessage]) -> String {
    let mut out = String::new();
    for t in threads {
        out.push('(');
        write_members(t, msgs, &mut out);
        out.push(')');
    }
    out
}

fn write_members(node: &Node, msgs: &[ThreadMessage], out: &mut String) {
    let mut cur = node;
    let mut wrote = false;
    loop {
        if let Some(m) = cur.msg {
            if wrote {
                out.push(' ');
            }
            let _ = write!(out, "{}", msgs[m].id);
            wrote = true;
        }
        match cur.children.len() {
            0 => return,
            1 if cur.msg.is_some() => cur = &cur.children[0],
            _ => {
                if wrote {
                    out.push(' ');
                }
                for c in &cur.children {
                    out.push('(');
                    write_members(c, msgs, out);
                    out.push(')');
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a summary holds of one message, for the tests.
    struct Owned {
        id: u32,
        mid: Option<String>,
        refs: String,
        key: String,
        is_reply: bool,
        sent: i64,
    }

    fn m(id: u32, mid: &str, refs: &[&str], subj: &str, sent: i64) -> Owned {
        let (base, is_reply) = crate::subject::base_subject(subj);
        Owned {
            id,
            mid: (!mid.is_empty()).then(|| mid.to_owned()),
            refs: refs.join(" "),
            key: crate::search_text::fold(&base),
            is_reply,
            sent,
        }
    }

    fn borrow(v: &[Owned]) -> Vec<ThreadMessage<'_>> {
        v.iter()
            .map(|o| ThreadMessage {
                id: o.id,
                message_id: o.mid.as_deref(),
                references: &o.refs,
                subject_key: &o.key,
                is_reply: o.is_reply,
                sent: o.sent,
            })
            .collect()
    }

    #[test]
    fn ids_are_extracted() {
        assert_eq!(message_ids("<a@b> <c@d>"), ["a@b", "c@d"]);
        assert_eq!(message_ids(" junk <x@y> (comment)"), ["x@y"]);
        assert!(message_ids("none").is_empty());
    }

    #[test]
    fn references_builds_trees() {
        let msgs = vec![
            m(1, "a@x", &[], "Hello", 10),
            m(2, "b@x", &["a@x"], "Re: Hello", 20),
            m(3, "c@x", &["a@x", "b@x"], "Re: Hello", 30),
            m(4, "d@x", &["a@x"], "Re: Hello", 25),
            m(5, "e@x", &[], "Other", 15),
        ];
        let msgs = borrow(&msgs);
        let t = references(&msgs);
        assert_eq!(format(&t, &msgs), "(1 (2 3)(4))(5)");
    }

    #[test]
    fn missing_parents_and_subject_merging() {
        let msgs = vec![
            // Two replies to a message that is not in the mailbox.
            m(1, "b@x", &["gone@x"], "Re: Lost", 10),
            m(2, "c@x", &["gone@x"], "Re: Lost", 20),
            // Same subject, no references: merged under the original.
            m(3, "d@x", &[], "Topic", 5),
            m(4, "e@x", &[], "Re: Topic", 40),
            // No Message-ID at all.
            m(5, "", &[], "Alone", 50),
        ];
        let msgs = borrow(&msgs);
        let t = references(&msgs);
        assert_eq!(format(&t, &msgs), "(3 4)((1)(2))(5)");
    }

    #[test]
    fn loops_and_duplicates_are_harmless() {
        let msgs = vec![
            m(1, "a@x", &["b@x"], "x", 1),
            m(2, "b@x", &["a@x"], "y", 2),
            m(3, "a@x", &[], "z", 3),
        ];
        let msgs = borrow(&msgs);
        let t = references(&msgs);
        let s = format(&t, &msgs);
        for id in ["1", "2", "3"] {
            assert_eq!(s.matches(id).count(), 1, "{s}");
        }
    }

    #[test]
    fn very_deep_chains_do_not_exhaust_the_stack() {
        let n = 20_000;
        let msgs: Vec<Owned> = (0..n)
            .map(|i| {
                let refs = if i == 0 {
                    String::new()
                } else {
                    format!("m{}", i - 1)
                };
                Owned {
                    id: i + 1,
                    mid: Some(format!("m{i}")),
                    refs,
                    key: String::new(),
                    is_reply: false,
                    sent: i as i64,
                }
            })
            .collect();
        let msgs = borrow(&msgs);
        let t = references(&msgs);
        let s = format(&t, &msgs);
        assert!(s.starts_with("(1 2 3 "), "{}", &s[..20]);
        let ids = s.split([' ', '(', ')']).filter(|x| !x.is_empty()).count();
        assert_eq!(ids as u32, n);
    }

    #[test]
    fn ordered_subject_groups() {
        let msgs = vec![
            m(1, "", &[], "b", 30),
            m(2, "", &[], "a", 20),
            m(3, "", &[], "Re: a", 25),
            m(4, "", &[], "Re: b", 10),
            m(5, "", &[], "a", 40),
        ];
        let msgs = borrow(&msgs);
        let t = ordered_subject(&msgs);
        assert_eq!(format(&t, &msgs), "(4 1)(2 (3)(5))");
    }
}

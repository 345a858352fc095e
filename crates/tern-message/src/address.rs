//! A lenient RFC 5322 address-list parser for ENVELOPE, which must show the
//! header's own strings (encoded words are left encoded, RFC 3501 §7.4.2).

use std::borrow::Cow;

/// One element of an address list as ENVELOPE lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressItem {
    /// A mailbox: display name, local part, domain.
    Mailbox {
        /// The display name (phrase), if any.
        name: Option<String>,
        /// The obsolete source route (`@a,@b` of `<@a,@b:user@host>`), which
        /// ENVELOPE shows as the address's adl, as Dovecot does.
        route: Option<String>,
        /// The local part.
        mailbox: Option<String>,
        /// The domain.
        host: Option<String>,
    },
    /// The start of a group `name:`.
    GroupStart(String),
    /// The end of a group `;`.
    GroupEnd,
}

/// A token of an address field; words and the text of quoted strings and
/// comments borrow from the field unless escapes or line breaks had to be
/// removed (addresses are parsed by the million when a large folder is
/// summarized, so tokens allocate only when they must).
#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Quoted(Cow<'a, str>),
    Special(char),
    Literal(&'a str),
    /// A comment's text: no part of a phrase or address, but the name of
    /// an address written without angle brackets (`a@b (Name)`).
    Comment(Cow<'a, str>),
}

fn tokenize(s: &str) -> Vec<Tok<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let (text, next) = delimited(s, i + 1, true);
                out.push(Tok::Comment(text));
                i = next;
            }
            b'"' => {
                let (text, next) = delimited(s, i + 1, false);
                out.push(Tok::Quoted(text));
                i = next;
            }
            b'[' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(b.len(), |p| i + p + 1);
                out.push(Tok::Literal(&s[i..end]));
                i = end;
            }
            c @ (b'<' | b'>' | b'@' | b',' | b':' | b';' | b'.') => {
                out.push(Tok::Special(char::from(c)));
                i += 1;
            }
            _ => {
                // A word: its first character, then up to white space or
                // a special.
                let rest = &s[i..];
                let end = rest
                    .char_indices()
                    .skip(1)
                    .find(|&(_, ch)| ch.is_whitespace() || "()<>@,:;.\"[".contains(ch))
                    .map_or(rest.len(), |(k, _)| k);
                out.push(Tok::Word(&rest[..end]));
                i += end;
            }
        }
    }
    out
}

/// The text of a comment (`comment`: nested parentheses count) or quoted
/// string starting at `start` (after its opening character), and where the
/// next token starts. Escapes are resolved and line breaks dropped; only
/// then is the text copied.
fn delimited(s: &str, start: usize, comment: bool) -> (Cow<'_, str>, usize) {
    let b = s.as_bytes();
    let mut depth = 1;
    let mut plain = true;
    let mut i = start;
    let end = loop {
        let Some(&c) = b.get(i) else {
            break b.len();
        };
        match c {
            b'\\' => {
                plain = false;
                i += 2;
                continue;
            }
            b'\r' | b'\n' => plain = false,
            b'(' if comment => depth += 1,
            b')' if comment => {
                depth -= 1;
                if depth == 0 {
                    break i;
                }
            }
            b'"' if !comment => break i,
            _ => {}
        }
        i += 1;
    };
    let next = (end + 1).min(b.len());
    let inner = &s[start.min(end)..end];
    if plain {
        return (Cow::Borrowed(inner), next);
    }
    let mut text = String::with_capacity(inner.len());
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                if let Some(n) = it.next() {
                    text.push(n);
                }
            }
            '\r' | '\n' => {}
            _ => text.push(c),
        }
    }
    (Cow::Owned(text), next)
}

/// Joins the tokens of a phrase with single spaces (dots stay attached).
fn phrase(toks: &[Tok]) -> Option<String> {
    let mut s = String::new();
    for t in toks {
        let piece = match t {
            Tok::Word(w) | Tok::Literal(w) => Cow::Borrowed(*w),
            Tok::Quoted(w) => Cow::Borrowed(&**w),
            Tok::Special(c) => Cow::Owned(c.to_string()),
            Tok::Comment(_) => continue,
        };
        let attach = matches!(t, Tok::Special('.')) || s.ends_with('.');
        if !s.is_empty() && !attach {
            s.push(' ');
        }
        s.push_str(&piece);
    }
    (!s.is_empty()).then_some(s)
}

/// Concatenates tokens of an addr-spec part with no spaces.
fn concat(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        match t {
            Tok::Word(w) | Tok::Literal(w) => s.push_str(w),
            Tok::Quoted(q) => {
                if q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
                    && !q.is_empty()
                {
                    s.push_str(q);
                } else {
                    s.push('"');
                    s.push_str(q);
                    s.push('"');
                }
            }
            Tok::Special(c) => s.push(*c),
            Tok::Comment(_) => {}
        }
    }
    s
}

/// Two words side by side with nothing between them but white space:
/// a phrase, which a local part cannot be.
fn is_bare_phrase(toks: &[Tok]) -> bool {
    let word = |t: &Tok| matches!(t, Tok::Word(_) | Tok::Quoted(_));
    let toks: Vec<&Tok> = toks
        .iter()
        .filter(|t| !matches!(t, Tok::Comment(_)))
        .collect();
    toks.windows(2).any(|w| word(w[0]) && word(w[1]))
}

/// An addr-spec split into its source route, local part and domain.
struct AddrSpec {
    route: Option<String>,
    mailbox: Option<String>,
    host: Option<String>,
}

fn addr_spec(toks: &[Tok]) -> AddrSpec {
    // Split off a source route `@a,@b:` if present.
    let (route, toks) = match toks.iter().position(|t| *t == Tok::Special(':')) {
        Some(p) if toks.first() == Some(&Tok::Special('@')) => {
            let route = concat(&toks[..p]);
            ((!route.is_empty()).then_some(route), &toks[p + 1..])
        }
        _ => (None, toks),
    };
    let (mailbox, host) = match toks.iter().rposition(|t| *t == Tok::Special('@')) {
        Some(at) => {
            let local = concat(&toks[..at]);
            let host = concat(&toks[at + 1..]);
            (
                (!local.is_empty()).then_some(local),
                (!host.is_empty()).then_some(host),
            )
        }
        None => {
            let local = concat(toks);
            ((!local.is_empty()).then_some(local), None)
        }
    };
    AddrSpec {
        route,
        mailbox,
        host,
    }
}

/// Parses an address list.
pub fn parse_list(s: &str) -> Vec<AddressItem> {
    let toks = tokenize(s);
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_group = false;
    while i < toks.len() {
        // Collect one address (up to ',' or ';' at depth 0, or a group start).
        let start = i;
        let mut angle: Option<(usize, usize)> = None;
        let mut group_colon = None;
        while i < toks.len() {
            match &toks[i] {
                Tok::Special('<') => {
                    let close = toks[i..]
                        .iter()
                        .position(|t| *t == Tok::Special('>'))
                        .map(|p| i + p)
                        .unwrap_or(toks.len());
                    angle = Some((i + 1, close));
                    i = close;
                }
                Tok::Special(':') if angle.is_none() && !in_group && group_colon.is_none() => {
                    group_colon = Some(i);
                    break;
                }
                Tok::Special(',') | Tok::Special(';') => break,
                _ => {}
            }
            i += 1;
        }
        if let Some(colon) = group_colon {
            out.push(AddressItem::GroupStart(
                phrase(&toks[start..colon]).unwrap_or_default(),
            ));
            in_group = true;
            i = colon + 1;
            continue;
        }
        let end = i.min(toks.len());
        let item = match angle {
            Some((a, b)) => {
                let spec = addr_spec(&toks[a..b.min(toks.len())]);
                let name = phrase(&toks[start..a - 1]);
                Some(AddressItem::Mailbox {
                    name,
                    route: spec.route,
                    mailbox: spec.mailbox,
                    host: spec.host,
                })
            }
            None if toks[start..end]
                .iter()
                .any(|t| !matches!(t, Tok::Comment(_))) =>
            {
                let spec = addr_spec(&toks[start..end]);
                let name = toks[start..end].iter().rev().find_map(|t| match t {
                    Tok::Comment(c) if !c.trim().is_empty() => Some(c.trim().to_owned()),
                    _ => None,
                });
                if name.is_none() && spec.host.is_none() && is_bare_phrase(&toks[start..end]) {
                    // Words with no `@` and no `<>` (`To: Only Name`): a
                    // display name without an address, as Dovecot reads it.
                    Some(AddressItem::Mailbox {
                        name: phrase(&toks[start..end]),
                        route: None,
                        mailbox: None,
                        host: None,
                    })
                } else {
                    Some(AddressItem::Mailbox {
                        name,
                        route: spec.route,
                        mailbox: spec.mailbox,
                        host: spec.host,
                    })
                }
            }
            None => None,
        };
        if let Some(item) = item {
            out.push(item);
        }
        if i < toks.len() {
            if toks[i] == Tok::Special(';') && in_group {
                out.push(AddressItem::GroupEnd);
                in_group = false;
            }
            i += 1;
        }
    }
    if in_group {
        out.push(AddressItem::GroupEnd);
    }
    out
}

/// The address list of a header value written out as Dovecot 2.3 writes
/// it before matching SEARCH FROM, TO, CC and BCC (measured against it):
/// every address reads `<a@b>`, or `Name <@route:a@b>` with the name quoted
/// when it holds anything but atext (a `.` included) and left as it is when
/// it holds encoded words; comments are dropped, but a name given as a
/// comment (`a@b (Name)`) is the name; groups read `group: <a@b>, <c@d>;`
/// (`group:;` when empty); a missing local part or domain is written as
/// `MISSING_MAILBOX` or `MISSING_DOMAIN`. Encoded words stay encoded (the
/// caller decodes).
pub fn normalized(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut first_in_group = false;
    for (i, item) in parse_list(s).into_iter().enumerate() {
        match item {
            AddressItem::GroupStart(name) => {
                if i > 0 {
                    out.push_str(", ");
                }
                push_maybe_quoted(&mut out, &name);
                out.push(':');
                first_in_group = true;
            }
            AddressItem::GroupEnd => {
                out.push(';');
                first_in_group = false;
            }
            AddressItem::Mailbox {
                name,
                route,
                mailbox,
                host,
            } => {
                if first_in_group {
                    out.push(' ');
                    first_in_group = false;
                } else if i > 0 {
                    out.push_str(", ");
                }
                if let Some(n) = name.as_deref().filter(|n| !n.is_empty()) {
                    push_maybe_quoted(&mut out, n);
                    out.push(' ');
                }
                out.push('<');
                if let Some(r) = &route {
                    out.push_str(r);
                    out.push(':');
                }
                out.push_str(mailbox.as_deref().unwrap_or("MISSING_MAILBOX"));
                out.push('@');
                out.push_str(host.as_deref().unwrap_or("MISSING_DOMAIN"));
                out.push('>');
            }
        }
    }
    out
}

/// A phrase as Dovecot writes it back: as it is when it is all atext (or
/// holds encoded words, which may not be quoted), else quoted with `"` and
/// `\` escaped.
fn push_maybe_quoted(out: &mut String, phrase: &str) {
    let atext =
        |c: char| c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if phrase.contains("=?") || (!phrase.is_empty() && phrase.chars().all(atext)) {
        out.push_str(phrase);
        return;
    }
    out.push('"');
    for c in phrase.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, m: &str, h: &str) -> AddressItem {
        AddressItem::Mailbox {
            name: name.map(Into::into),
            route: None,
            mailbox: Some(m.into()),
            host: Some(h.into()),
        }
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list("\"Doe, John\" <john@example.com>, jane@x.org (Jane)"),
            vec![
                mb(Some("Doe, John"), "john", "example.com"),
                mb(Some("Jane"), "jane", "x.org")
            ]
        );
        assert_eq!(
            parse_list("=?utf-8?q?J=C3=B6rg?= <j@x>"),
            vec![mb(Some("=?utf-8?q?J=C3=B6rg?="), "j", "x")]
        );
        assert_eq!(
            parse_list("undisclosed-recipients:;"),
            vec![
                AddressItem::GroupStart("undisclosed-recipients".into()),
                AddressItem::GroupEnd
            ]
        );
        assert_eq!(
            parse_list("A Group: a@b, c@d; e@f"),
            vec![
                AddressItem::GroupStart("A Group".into()),
                mb(None, "a", "b"),
                mb(None, "c", "d"),
                AddressItem::GroupEnd,
                mb(None, "e", "f")
            ]
        );
        assert_eq!(parse_list(""), vec![]);
    }

    #[test]
    fn normalized_lists_drop_comments_and_name_commented_addresses() {
        assert_eq!(
            normalized("<user-from (comment)@ (comment) domain.org>"),
            "<user-from@domain.org>"
        );
        assert_eq!(
            normalized("user@domain.org (Real Name), b@c"),
            "\"Real Name\" <user@domain.org>, <b@c>"
        );
        assert_eq!(
            normalized("g: a@b, c@d;, g2: e@f;, empty:;"),
            "g: <a@b>, <c@d>;, g2: <e@f>;, empty:;"
        );
        assert_eq!(normalized("<@r:u@d>"), "<@r:u@d>");
        assert_eq!(normalized("J.Smith <j@x>"), "\"J.Smith\" <j@x>");
        assert_eq!(
            normalized("Single <s@x>, local"),
            "Single <s@x>, <local@MISSING_DOMAIN>"
        );
        assert_eq!(
            normalized("\"say \\\"hi\\\"\" <q@x>"),
            "\"say \\\"hi\\\"\" <q@x>"
        );
        assert_eq!(
            normalized("=?utf-8?q?J=C3=B6rg_M?= <j@x>"),
            "=?utf-8?q?J=C3=B6rg_M?= <j@x>"
        );
    }

    #[test]
    fn escapes_and_line_breaks_in_quoted_strings_and_comments() {
        assert_eq!(
            parse_list("\"a\\\"b\" <x@y>, z@w (Na\r\n me (inner) \\) end)"),
            vec![
                mb(Some("a\"b"), "x", "y"),
                mb(Some("Na me (inner) ) end"), "z", "w")
            ]
        );
        // Unterminated: to the end of the field, no panic.
        assert_eq!(parse_list("x@y (open"), vec![mb(Some("open"), "x", "y")]);
        assert_eq!(
            parse_list("\"open <x@y>"),
            vec![AddressItem::Mailbox {
                name: None,
                route: None,
                mailbox: Some("\"open <x@y>\"".into()),
                host: None
            }]
        );
    }

    #[test]
    fn source_routes_are_kept_as_the_adl() {
        let routed = |route: &str| AddressItem::Mailbox {
            name: None,
            route: Some(route.into()),
            mailbox: Some("user".into()),
            host: Some("domain".into()),
        };
        assert_eq!(parse_list("<@route:user@domain>"), vec![routed("@route")]);
        assert_eq!(
            parse_list("<@a.example, @b.example:user@domain>"),
            vec![routed("@a.example,@b.example")]
        );
    }
}

//! The base subject of RFC 5256 §2.1, which SORT SUBJECT and THREAD group
//! messages by: "Re: [list] Fwd: Hello (fwd)" and "Hello" are one subject.

/// The base subject of a decoded (UTF-8) subject, and whether the subject
/// marked a reply or forward (`Re:`, `Fwd:`, `(fwd)`, `[fwd: ...]`), which
/// ORDEREDSUBJECT and REFERENCES threading use.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // (1) Tabs and line breaks to spaces, runs of spaces to one.
    let mut s = String::with_capacity(decoded.len());
    let mut space = false;
    for c in decoded.chars() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            if !space {
                s.push(' ');
            }
            space = true;
        } else {
            s.push(c);
            space = false;
        }
    }
    let mut is_reply = false;
    loop {
        // (2) Trailers: "(fwd)" and whitespace, repeatedly.
        loop {
            let t = s.trim_end_matches([' ', '\t']);
            if t.len() != s.len() {
                s.truncate(t.len());
                continue;
            }
            if s.get(s.len().saturating_sub(5)..)
                .is_some_and(|t| t.len() == 5 && t.eq_ignore_ascii_case("(fwd)"))
            {
                s.truncate(s.len() - 5);
                is_reply = true;
                continue;
            }
            break;
        }
        // (3)-(5) Leaders and blobs, until none remains.
        loop {
            let before = s.len();
            while let Some((rest, reply)) = strip_leader(&s) {
                is_reply |= reply;
                s = rest.to_owned();
            }
            if let Some(rest) = strip_blob(&s) {
                if !rest.is_empty() {
                    s = rest.to_owned();
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd: ...]" around the whole subject.
        if s.len() >= 6
            && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("[fwd:"))
            && s.ends_with(']')
        {
            s = s[5..s.len() - 1].to_owned();
            is_reply = true;
            continue;
        }
        return (s, is_reply);
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: the rest after it.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    if rest.as_bytes()[end] != b']' {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches([' ', '\t']))
}

/// `subj-leader = (*subj-blob subj-refwd) / WSP`: the rest after one
/// leader, and whether it was a reply/forward marker.
fn strip_leader(s: &str) -> Option<(&str, bool)> {
    if let Some(rest) = s.strip_prefix([' ', '\t']) {
        return Some((rest, false));
    }
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    let lower = rest.get(..3).unwrap_or(rest).to_ascii_lowercase();
    let mut r = if lower.starts_with("re") {
        &rest[2..]
    } else if lower.starts_with("fwd") {
        &rest[3..]
    } else if lower.starts_with("fw") {
        &rest[2..]
    } else {
        return None;
    };
    r = r.trim_start_matches([' ', '\t']);
    if let Some(after) = strip_blob(r) {
        r = after;
    }
    r.strip_prefix(':').map(|r| (r, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> String {
        base_subject(s).0
    }

    #[test]
    fn rfc5256_examples() {
        assert_eq!(base("Re: Hello"), "Hello");
        assert_eq!(base("RE: re: Fwd: Hello"), "Hello");
        assert_eq!(base("Re: [list] Hello (fwd)"), "Hello");
        assert_eq!(base("[list] Re: Hello"), "Hello");
        assert_eq!(base("Re [x]: Hello"), "Hello");
        assert_eq!(base("[fwd: Re: Hello]"), "Hello");
        assert_eq!(base("Hello\t  world  "), "Hello world");
        // A blob that is the whole subject stays.
        assert_eq!(base("[only]"), "[only]");
        assert_eq!(base("Re: [only]"), "[only]");
        assert_eq!(base("Reply to this"), "Reply to this");
        assert_eq!(base(""), "");
        assert_eq!(base("Ré: ü(fwd)"), "Ré: ü");
        assert_eq!(base("ü"), "ü");
        assert_eq!(base("Re:"), "");
        assert!(base_subject("Re: x").1);
        assert!(base_subject("x (fwd)").1);
        assert!(!base_subject("x").1);
        assert!(!base_subject("[list] x").1);
    }
}

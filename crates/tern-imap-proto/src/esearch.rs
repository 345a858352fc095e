//! Extended SEARCH (RFC 4731: `SEARCH RETURN (MIN MAX COUNT ALL)`) and
//! saved results (RFC 5182: `RETURN (SAVE)` and `$`), which the IMAP
//! grammar crate does not parse: the RETURN clause is taken out of the
//! command before it is parsed (`$` is found by [`crate::lexer`]).

/// The RETURN options of an extended SEARCH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReturnOptions {
    /// Lowest matching number.
    pub min: bool,
    /// Highest matching number.
    pub max: bool,
    /// Every matching number, as a sequence set.
    pub all: bool,
    /// How many matched.
    pub count: bool,
    /// Keep the result for `$` (RFC 5182).
    pub save: bool,
}

/// What went wrong in a RETURN clause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    /// An option that is not MIN, MAX, ALL, COUNT or SAVE.
    #[error("unknown SEARCH RETURN option {0}")]
    Unknown(String),
    /// No closing parenthesis.
    #[error("unterminated SEARCH RETURN options")]
    Unterminated,
}

fn skip_word<'a>(s: &'a [u8], word: &str) -> Option<&'a [u8]> {
    let n = word.len();
    if s.len() > n && s[..n].eq_ignore_ascii_case(word.as_bytes()) && s[n] == b' ' {
        Some(&s[n + 1..])
    } else {
        None
    }
}

/// If `bytes` is `tag [UID] SEARCH RETURN (...) criteria`, the command
/// without the RETURN clause and the options; `Ok(None)` for any other
/// command.
///
/// # Errors
/// [`ReturnError`] for a malformed RETURN clause.
pub fn split_return(bytes: &[u8]) -> Result<Option<(Vec<u8>, ReturnOptions)>, ReturnError> {
    let Some(sp) = bytes.iter().position(|&b| b == b' ') else {
        return Ok(None);
    };
    let after_tag = &bytes[sp + 1..];
    let after_uid = skip_word(after_tag, "UID").unwrap_or(after_tag);
    let Some(after_search) = skip_word(after_uid, "SEARCH") else {
        return Ok(None);
    };
    let Some(after_return) = skip_word(after_search, "RETURN") else {
        return Ok(None);
    };
    let Some(list) = after_return.strip_prefix(b"(") else {
        return Ok(None);
    };
    let close = list
        .iter()
        .position(|&b| b == b')')
        .ok_or(ReturnError::Unterminated)?;
    let mut opts = ReturnOptions::default();
    for word in list[..close]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_uppercase().as_slice() {
            b"MIN" => opts.min = true,
            b"MAX" => opts.max = true,
            b"ALL" => opts.all = true,
            b"COUNT" => opts.count = true,
            b"SAVE" => opts.save = true,
            other => {
                return Err(ReturnError::Unknown(
                    String::from_utf8_lossy(other).into_owned(),
                ))
            }
        }
    }
    // RETURN () is RETURN (ALL) (RFC 4731 §3.1).
    if !(opts.min || opts.max || opts.all || opts.count || opts.save) {
        opts.all = true;
    }
    let rest = list[close + 1..]
        .strip_prefix(b" ")
        .unwrap_or(&list[close + 1..]);
    let head_len = bytes.len() - after_search.len();
    let mut out = bytes[..head_len].to_vec();
    out.extend_from_slice(rest);
    Ok(Some((out, opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_clauses_are_taken_out() {
        let (cmd, o) = split_return(b"a1 UID SEARCH RETURN (MIN count) UNSEEN\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(cmd, b"a1 UID SEARCH UNSEEN\r\n");
        assert!(o.min && o.count && !o.max && !o.all);
        let (cmd, o) = split_return(b"a SEARCH RETURN () ALL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(cmd, b"a SEARCH ALL\r\n");
        assert!(o.all);
        assert!(split_return(b"a SEARCH ALL\r\n").unwrap().is_none());
        assert!(split_return(b"a FETCH 1 FLAGS\r\n").unwrap().is_none());
        assert!(split_return(b"a SEARCH RETURN (BOGUS) ALL\r\n").is_err());
    }
}

//! POP3 UIDLs computed from a template, as Dovecot's `pop3_uidl_format`
//! computes them, for sites that move from Dovecot: Dovecot does not store
//! the UIDLs it shows unless told to (`pop3_save_uidl`), it derives them
//! from the IMAP UID and UIDVALIDITY, which tern takes over from
//! `dovecot-uidlist`. With `pop3.uidl_format = "%08Xu%08Xv"` (Dovecot's
//! default) tern shows the very UIDLs Dovecot showed.
//!
//! The template language is Dovecot's, for the variables a Maildir can
//! answer: `%u` / `%{uid}` the IMAP UID, `%v` / `%{uidvalidity}` the
//! folder's UIDVALIDITY, `%f` / `%{filename}` the file name without its
//! flags, `%%` a percent sign. Between `%` and the variable: a width
//! (`08` pads with zeros, `8` with spaces) and `X`, which writes the number
//! in hexadecimal (lower case, as Dovecot writes it).

/// What a template refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Uid,
    UidValidity,
    FileName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var {
        var: Var,
        width: usize,
        zero: bool,
        hex: bool,
    },
}

/// A parsed UIDL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlFormat {
    pieces: Vec<Piece>,
}

impl UidlFormat {
    /// Parses a template; the error names what is wrong with it.
    ///
    /// # Errors
    /// An unknown variable, a `%` at the end, or a template that uses no
    /// variable that tells messages apart (`%u` or `%f`).
    pub fn parse(template: &str) -> Result<UidlFormat, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                text.push('%');
                continue;
            }
            let zero = chars.peek() == Some(&'0');
            let mut width = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                width = width.saturating_mul(10).saturating_add(d as usize).min(64);
                chars.next();
            }
            let hex = chars.peek() == Some(&'X');
            if hex {
                chars.next();
            }
            let var = match chars.next() {
                Some('u') => Var::Uid,
                Some('v') => Var::UidValidity,
                Some('f') => Var::FileName,
                Some('{') => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    match name.as_str() {
                        "uid" => Var::Uid,
                        "uidvalidity" => Var::UidValidity,
                        "filename" => Var::FileName,
                        other => return Err(format!("unknown variable %{{{other}}}")),
                    }
                }
                Some(other) => {
                    return Err(format!("unknown variable %{other} (tern knows %u, %v, %f)"))
                }
                None => return Err("a % at the end".to_owned()),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var {
                var,
                width,
                zero,
                hex,
            });
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let unique = pieces.iter().any(|p| {
            matches!(
                p,
                Piece::Var {
                    var: Var::Uid | Var::FileName,
                    ..
                }
            )
        });
        if !unique {
            return Err("needs %u or %f, or every message gets the same UIDL".to_owned());
        }
        Ok(UidlFormat { pieces })
    }

    /// The UIDL of the message with this UID and file name (without flags)
    /// in a folder of this UIDVALIDITY.
    pub fn render(&self, uid: u32, uidvalidity: u32, base_name: &str) -> String {
        let mut out = String::with_capacity(24);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var {
                    var,
                    width,
                    zero,
                    hex,
                } => {
                    let value = match var {
                        Var::Uid if *hex => format!("{uid:x}"),
                        Var::Uid => uid.to_string(),
                        Var::UidValidity if *hex => format!("{uidvalidity:x}"),
                        Var::UidValidity => uidvalidity.to_string(),
                        Var::FileName => base_name.to_owned(),
                    };
                    let pad = width.saturating_sub(value.chars().count());
                    let fill = if *zero { '0' } else { ' ' };
                    out.extend(std::iter::repeat_n(fill, pad));
                    out.push_str(&value);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecots_default_and_others() {
        // Measured on Dovecot 2.3: UID 1, UIDVALIDITY 1795778521.
        let f = UidlFormat::parse("%08Xu%08Xv").unwrap();
        assert_eq!(f.render(1, 1_795_778_521, "x"), "000000016b0967d9");
        let f = UidlFormat::parse("UID%u-%v").unwrap();
        assert_eq!(f.render(7, 99, "x"), "UID7-99");
        let f = UidlFormat::parse("%{uidvalidity}-%{uid}").unwrap();
        assert_eq!(f.render(7, 99, "x"), "99-7");
        let f = UidlFormat::parse("%f 100%%").unwrap();
        assert_eq!(f.render(7, 99, "1.M1P2.host"), "1.M1P2.host 100%");
        let f = UidlFormat::parse("%4u").unwrap();
        assert_eq!(f.render(7, 99, "x"), "   7");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(UidlFormat::parse("%v").is_err());
        assert!(UidlFormat::parse("%m").is_err());
        assert!(UidlFormat::parse("%u%").is_err());
        assert!(UidlFormat::parse("%{md5}").is_err());
        assert!(UidlFormat::parse("plain").is_err());
    }
}

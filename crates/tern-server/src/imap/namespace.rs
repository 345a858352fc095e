//! The personal namespace (RFC 2342): how wire names map to folders.
//!
//! Courier-IMAP shows folders as `INBOX.Work` (prefix `INBOX.`, separator
//! `.`); a Dovecot site's clients know the same Maildir++ folder as `Work`
//! (prefix empty) and maybe `Work/2024` (separator `/`). The prefix and the
//! separator are configurable (`imap.namespace_prefix`, `imap.separator`)
//! so that tern can serve either site under the names its clients already
//! have; on disk the folder is `.Work.2024` whichever is chosen.
//!
//! Wire names are modified UTF-7 (RFC 3501 §5.1.3); folders are Unicode
//! ([`FolderName`]), spelled on disk as the Maildir spells them.

use tern_imap_proto::command::mailbox_name;
use tern_imap_proto::imap_types::mailbox::Mailbox;
use tern_imap_proto::response::Code;
use tern_maildir::{mutf7, FolderName};

use super::session::Reply;

/// A mailbox name resolved to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Inbox,
    Folder(FolderName),
}

impl Target {
    pub fn folder(&self) -> Option<&FolderName> {
        match self {
            Target::Inbox => None,
            Target::Folder(f) => Some(f),
        }
    }

    /// The name as Courier's subscription file holds it, in Unicode:
    /// `INBOX` or `INBOX.` and the folder.
    pub fn full_name(&self) -> String {
        match self {
            Target::Inbox => "INBOX".to_owned(),
            Target::Folder(f) => format!("INBOX.{f}"),
        }
    }
}

/// The personal namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
    sep: char,
}

impl Default for Namespace {
    /// Courier-IMAP's: `INBOX.` and `.`.
    fn default() -> Self {
        Namespace {
            prefix: "INBOX.".to_owned(),
            sep: '.',
        }
    }
}

impl Namespace {
    /// A namespace of a validated configuration: `prefix` is empty or
    /// `INBOX` and the separator; `sep` is `.` or `/`.
    pub fn new(prefix: &str, sep: char) -> Result<Namespace, String> {
        if sep != '.' && sep != '/' {
            return Err(format!("separator {sep:?}: must be \".\" or \"/\""));
        }
        if !prefix.is_empty() && prefix != format!("INBOX{sep}") {
            return Err(format!("prefix {prefix:?}: must be \"\" or \"INBOX{sep}\""));
        }
        Ok(Namespace {
            prefix: prefix.to_owned(),
            sep,
        })
    }

    /// The hierarchy separator.
    pub fn sep(&self) -> char {
        self.sep
    }

    /// The NAMESPACE response's data.
    pub fn response(&self) -> String {
        format!("NAMESPACE ((\"{}\" \"{}\")) NIL NIL", self.prefix, self.sep)
    }

    /// The wire name of a target.
    pub(crate) fn wire_name(&self, t: &Target) -> String {
        match t {
            Target::Inbox => "INBOX".to_owned(),
            Target::Folder(f) => self.wire_of_folder(f.as_str()),
        }
    }

    /// The wire name of a Unicode folder name below INBOX (`Work.2024`).
    pub fn wire_of_folder(&self, name: &str) -> String {
        let levels = if self.sep == '.' {
            name.to_owned()
        } else {
            name.replace('.', "/")
        };
        format!("{}{}", self.prefix, mutf7::encode(&levels))
    }

    /// The wire name of a subscription's full name (`INBOX.Work`), if it is
    /// one this namespace can show.
    pub fn wire_of_full_name(&self, full: &str) -> Option<String> {
        if full == "INBOX" {
            return Some("INBOX".to_owned());
        }
        full.strip_prefix("INBOX.")
            .map(|rest| self.wire_of_folder(rest))
    }

    /// Resolves a parsed mailbox name ([`Namespace::resolve`]).
    pub(crate) fn resolve_mailbox(&self, m: &Mailbox<'_>) -> Result<Target, Reply> {
        self.resolve(&mailbox_name(m))
    }

    /// Resolves a wire name, refusing names that are not valid modified
    /// UTF-7, lie outside the namespace, or could escape the Maildir.
    pub(crate) fn resolve(&self, name: &str) -> Result<Target, Reply> {
        let name = name.strip_suffix(self.sep).unwrap_or(name);
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(Target::Inbox);
        }
        let decoded = mutf7::decode(name)
            .map_err(|e| Reply::no(Some(Code::Cannot), format!("Invalid mailbox name: {e}")))?;
        let rest = match decoded.get(..self.prefix.len()) {
            Some(p) if p.eq_ignore_ascii_case(&self.prefix) => &decoded[self.prefix.len()..],
            _ => {
                return Err(Reply::no(
                    Some(Code::Nonexistent),
                    format!("Mailbox names start with {} (see NAMESPACE)", self.prefix),
                ))
            }
        };
        let dotted = if self.sep == '.' {
            rest.to_owned()
        } else if rest.contains('.') {
            return Err(Reply::no(
                Some(Code::Cannot),
                "'.' cannot be part of a folder name here (Maildir++ keeps it as the separator)",
            ));
        } else {
            rest.replace('/', ".")
        };
        FolderName::new(&dotted)
            .map(Target::Folder)
            .map_err(|e| Reply::no(Some(Code::Cannot), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn courier_names_resolve() {
        let ns = Namespace::default();
        assert_eq!(ns.resolve("inbox").unwrap(), Target::Inbox);
        let w = |n: &str| ns.wire_name(&ns.resolve(n).unwrap());
        assert_eq!(w("INBOX.Work.2024"), "INBOX.Work.2024");
        assert_eq!(w("inbox.Sent"), "INBOX.Sent");
        assert_eq!(w("INBOX.Sub."), "INBOX.Sub");
        assert_eq!(w("INBOX.Entw&APw-rfe"), "INBOX.Entw&APw-rfe");
        assert_eq!(
            ns.resolve("INBOX.Entw&APw-rfe")
                .unwrap()
                .folder()
                .unwrap()
                .as_str(),
            "Entwürfe"
        );
        assert!(ns.resolve("Work").is_err());
        assert!(ns.resolve("INBOX.a/b").is_err());
        assert!(ns.resolve("INBOX...").is_err());
        assert!(ns.resolve("INBOX.&Jjo").is_err());
        assert!(ns.resolve("INBOX.Entwürfe").is_err(), "8-bit on the wire");
    }

    #[test]
    fn dovecot_names_resolve() {
        let ns = Namespace::new("", '/').unwrap();
        let t = ns.resolve("Work/2024").unwrap();
        assert_eq!(t.folder().unwrap().as_str(), "Work.2024");
        assert_eq!(ns.wire_name(&t), "Work/2024");
        assert_eq!(ns.resolve("INBOX").unwrap(), Target::Inbox);
        assert!(ns.resolve("a.b").is_err());
        assert_eq!(
            ns.wire_of_full_name("INBOX.Work.2024").unwrap(),
            "Work/2024"
        );
        let dot = Namespace::new("", '.').unwrap();
        assert_eq!(
            dot.wire_name(&dot.resolve("Work.2024").unwrap()),
            "Work.2024"
        );
        assert_eq!(dot.response(), "NAMESPACE ((\"\" \".\")) NIL NIL");
        assert!(Namespace::new("Mail/", '/').is_err());
        assert!(Namespace::new("INBOX.", '/').is_err());
        assert!(Namespace::new("", '\\').is_err());
    }
}

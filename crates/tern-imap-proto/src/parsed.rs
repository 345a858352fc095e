//! One parse of a whole command (its lines and literals, as the framer
//! hands them out) into what the server runs: imap-codec's typed command
//! plus what that grammar lacks, as typed parts of their own.
//!
//! - ESEARCH (RFC 4731) `SEARCH RETURN (...)`: [`Parsed::esearch`].
//! - Search criteria of SEARCH, SORT and THREAD, read at any depth without
//!   recursion, with SEARCHRES `$` as a key of its own
//!   ([`crate::criteria`]): [`Parsed::criteria`].
//! - SEARCHRES `$` (RFC 5182) as the sequence set of FETCH, STORE, COPY,
//!   MOVE and UID EXPUNGE: [`Parsed::saved_set`]; the server, which holds
//!   the saved result, writes it into the command
//!   ([`set_sequence_set`]). No session state is ever written into bytes.
//! - `BINARY[1.MIME]`-style text sections, which only Dovecot's leniency
//!   allows: [`Parsed::binary_aliases`].
//!
//! Each of those parts is located by [`crate::lexer`] (never inside a
//! quoted string or a literal) and stands in the codec's input as a
//! placeholder the codec parses (`1` for `$`, `ALL` for criteria, a BODY
//! section for a BINARY one), so the codec still checks the rest of the
//! command; which commands exist is the codec's, so no list can drift.

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::binary_sections::BinaryAlias;
use crate::command::ParseError;
use crate::criteria::Criteria;
use crate::esearch::{ReturnError, ReturnOptions};

/// A command, parsed once.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The tag and the command as the codec reads it (with placeholders
    /// where the parts below stand).
    pub command: Command<'static>,
    /// The RETURN options of an extended SEARCH.
    pub esearch: Option<ReturnOptions>,
    /// The criteria of SEARCH, SORT or THREAD (the codec's own are `ALL`).
    pub criteria: Option<Criteria>,
    /// The sequence set is `$`: the session's saved result, to be written
    /// in with [`set_sequence_set`] (the codec's is a placeholder `1`).
    pub saved_set: bool,
    /// FETCH items asked for as BINARY text sections and parsed as BODY.
    pub binary_aliases: Vec<BinaryAlias>,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A malformed RETURN clause.
    #[error(transparent)]
    Return(#[from] ReturnError),
    /// Search criteria that do not parse or hold too many keys.
    #[error(transparent)]
    Criteria(#[from] crate::criteria::Error),
    /// The codec refuses the rest.
    #[error(transparent)]
    Syntax(#[from] ParseError),
}

/// Parses the complete command `bytes`, allowing at most `max_search_keys`
/// search keys.
///
/// # Errors
/// [`Refusal`] says which part was wrong.
pub fn parse(bytes: &[u8], max_search_keys: usize) -> Result<Parsed, Refusal> {
    let mut owned: Option<Vec<u8>> = None;
    let esearch = match crate::esearch::split_return(bytes)? {
        Some((cmd, opts)) => {
            owned = Some(cmd);
            Some(opts)
        }
        None => None,
    };
    let mut saved_set = false;
    {
        let now = owned.as_deref().unwrap_or(bytes);
        if let Some(r) = crate::lexer::saved_set_argument(now) {
            let mut out = now.to_vec();
            out.splice(r, *b"1");
            owned = Some(out);
            saved_set = true;
        }
    }
    let now = owned.as_deref().unwrap_or(bytes);
    let criteria = match crate::criteria::split_command(now, max_search_keys)? {
        Some((head, c)) => {
            owned = Some(head);
            Some(c)
        }
        None => None,
    };
    let input = owned.as_deref().unwrap_or(bytes);
    let (command, binary_aliases) = match crate::command::parse(input) {
        Ok(c) => (c, Vec::new()),
        Err(e) => {
            let (cmd, aliases) = crate::binary_sections::rewrite(input).ok_or(e)?;
            (crate::command::parse(&cmd)?, aliases)
        }
    };
    Ok(Parsed {
        command,
        esearch,
        criteria,
        saved_set,
        binary_aliases,
    })
}

/// Writes `set` as the sequence set of `body` (FETCH, STORE, COPY, MOVE or
/// UID EXPUNGE); whether the command has one.
pub fn set_sequence_set(body: &mut CommandBody<'static>, set: SequenceSet) -> bool {
    match body {
        CommandBody::Fetch { sequence_set, .. }
        | CommandBody::Store { sequence_set, .. }
        | CommandBody::Copy { sequence_set, .. }
        | CommandBody::Move { sequence_set, .. }
        | CommandBody::ExpungeUid { sequence_set } => {
            *sequence_set = set;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_typed_and_the_rest_is_the_codecs() {
        let p = parse(
            b"a1 UID SEARCH RETURN (MIN SAVE) OR $ SEEN (UID $)\r\n",
            100,
        )
        .unwrap();
        let opts = p.esearch.unwrap();
        assert!(opts.min && opts.save);
        assert!(p.criteria.as_ref().is_some_and(Criteria::uses_saved));
        assert!(!p.saved_set);
        assert_eq!(p.command.tag.as_ref(), "a1");
        let p = parse(b"b UID FETCH $ (FLAGS)\r\n", 100).unwrap();
        assert!(p.saved_set && p.criteria.is_none());
        assert!(matches!(
            p.command.body,
            CommandBody::Fetch { uid: true, .. }
        ));
        let p = parse(b"c FETCH 1 (BINARY.PEEK[1.MIME])\r\n", 100).unwrap();
        assert_eq!(p.binary_aliases.len(), 1);
        // `$` as a mailbox name is a mailbox name.
        let p = parse(b"d CREATE $\r\n", 100).unwrap();
        assert!(!p.saved_set);
        assert!(matches!(p.command.body, CommandBody::Create { .. }));
    }

    #[test]
    fn each_part_refuses_with_its_own_reason() {
        assert!(matches!(
            parse(b"a SEARCH RETURN (BOGUS) ALL\r\n", 10),
            Err(Refusal::Return(_))
        ));
        assert!(matches!(
            parse(b"a SEARCH SEEN SEEN SEEN\r\n", 2),
            Err(Refusal::Criteria(crate::criteria::Error::TooManyKeys(2)))
        ));
        assert!(matches!(
            parse(b"a SORT (BOGUS) UTF-8 ALL\r\n", 10),
            Err(Refusal::Syntax(_))
        ));
        assert!(matches!(
            parse(b"a FETCH $ BOGUS\r\n", 10),
            Err(Refusal::Syntax(_))
        ));
    }

    #[test]
    fn the_saved_set_is_written_into_the_command() {
        let mut p = parse(b"a COPY $ Trash\r\n", 10).unwrap();
        let set = SequenceSet::try_from("3:5,9").unwrap();
        assert!(set_sequence_set(&mut p.command.body, set.clone()));
        match p.command.body {
            CommandBody::Copy { sequence_set, .. } => assert_eq!(sequence_set, set),
            other => panic!("{other:?}"),
        }
        let mut noop = parse(b"a NOOP\r\n", 10).unwrap();
        assert!(!set_sequence_set(
            &mut noop.command.body,
            SequenceSet::try_from("1").unwrap()
        ));
    }
}

//! The IMAP protocol layer of tern, free of I/O.
//!
//! Commands are parsed once ([`parsed`]): by imap-codec ([`command`]), with
//! the grammar it lacks typed beside it (ESEARCH, SEARCHRES `$`, criteria
//! at any depth, BINARY text sections). This crate also holds what the
//! codec leaves to the server: framing of command lines and literals
//! ([`framing`]), sequence-set
//! resolution against a mailbox ([`seqset`]) and the formatting of response
//! data ([`wire`]). The server crate reads sockets and files and feeds them
//! through here; nothing in this crate logs, blocks or touches the disk.

pub mod acl;
pub mod binary_sections;
pub mod command;
pub mod criteria;
pub mod engine;
pub mod esearch;
pub mod framer;
pub mod framing;
pub mod fuzzing;
pub mod ids;
pub mod lexer;
pub mod parsed;
pub mod response;
pub mod seqset;
pub mod wire;

pub use imap_codec;
pub use imap_codec::imap_types;

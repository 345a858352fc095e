//! Message content, free of I/O: MIME structure, ENVELOPE, BODYSTRUCTURE,
//! body sections and SEARCH text matching.
//!
//! Everything works on the message as IMAP sees it: with CRLF line ends
//! ([`crlf::to_crlf`]), whatever the file on disk holds. Structure is parsed
//! straight from the bytes, because section offsets and ENVELOPE strings must
//! be the message's own octets; decoding for SEARCH (RFC 2047 words,
//! transfer encodings, charsets) goes through mail-parser.

pub mod address;
pub mod binary;
pub mod bodystructure;
pub mod crlf;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod mime;
pub mod search_text;
pub mod section;
pub mod subject;
pub mod summary;
pub mod thread;

pub use mime::{parse, Part, PartKind};

//! Compatibility with Courier-IMAP and Dovecot files, and `tern imapd`.

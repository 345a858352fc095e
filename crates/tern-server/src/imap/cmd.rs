//! One handler per command (the dispatch in [`super::session`] calls
//! them): each file holds the `Session` method that runs one command, or a
//! pair that differ by a word (SUBSCRIBE and UNSUBSCRIBE, COPY and MOVE).
//! What several share stays beside the session: the FETCH item machinery
//! in [`super::fetch`], the search evaluation in [`super::search`], the
//! message streaming of APPEND in [`super::append`], the untagged updates
//! in [`super::selected`].

mod acl;
mod append;
mod authenticate;
mod capability;
mod close;
mod copy;
mod create;
mod delete;
mod expunge;
mod fetch;
mod getquota;
mod getquotaroot;
mod id;
mod idle;
mod list;
mod login;
mod logout;
mod rename;
mod search;
mod select;
mod setquota;
mod sort;
mod starttls;
mod status;
mod store;
mod subscribe;
mod thread;

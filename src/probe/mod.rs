//! Clients for probing a live relay from the operator's machine, as a chat client would
//! reach it: TLS (with the port-443 ALPN mux), IMAP, SMTP submission, OpenPGP messages
//! and fresh accounts. Used by `test` (and meant for `bench`).

pub mod account;
pub mod imap;
pub mod openpgp;
pub mod smtp;
pub mod tls;

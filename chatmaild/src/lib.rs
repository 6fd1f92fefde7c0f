//! Rust implementation of chatmail's relay-side helper services.
//!
//! * [`config`]: `chatmail.ini` reader shared with the deploy tool.
//! * [`dict`]: Dovecot dict-proxy protocol server (unix socket).
//! * [`doveauth`]: passdb/userdb with create-on-first-login.
//! * [`lastlogin`]: last-login tracking in the password file's mtime.
//! * [`metadata`]: IMAP METADATA backend and push notifications.
//! * [`expire`], [`fsreport`]: mailbox expiry and storage statistics.
//! * [`newemail`]: the `/new` credentials CGI.
//! * [`activation`], [`shutdown`]: sockets passed by systemd, graceful stop on SIGTERM.

pub mod activation;
pub mod cli;
pub mod config;
pub mod crypt;
pub mod dict;
pub mod doveauth;
pub mod error;
pub mod expire;
pub mod filtermail;
pub mod fsreport;
pub mod fsutil;
pub mod lastlogin;
pub mod logging;
pub mod mailbox;
pub mod metadata;
pub mod migrate;
pub mod newemail;
pub mod shutdown;
pub mod syslimits;
pub mod test_hooks;
pub mod user;

pub use config::{Config, TlsMode};
pub use error::{Error, Result};
pub use user::{User, UserRecord};

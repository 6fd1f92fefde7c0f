//! Server side of Dovecot's dict-proxy protocol over a unix socket, shared by doveauth,
//! lastlogin and metadata. Services only implement [`DictHandler`].

pub mod protocol;
pub mod server;
pub mod session;

pub use server::{MAX_LINE, bind, serve, serve_listener, serve_listener_until};
pub use session::Session;

/// Outcome of a lookup: `O<value>`, `N` or `F` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    Found(String),
    NotFound,
    Failed,
}

/// Service-specific behaviour. Methods run on a blocking thread, so they may do file
/// I/O, take locks and hash passwords. The defaults mirror an "empty" dict.
pub trait DictHandler: Send + Sync + 'static {
    /// `L<key>[\t<user>]`.
    fn lookup(&self, key: &str, user: Option<&str>) -> LookupResult {
        let _ = user;
        log::warn!("lookup ignored: {key:?}");
        LookupResult::NotFound
    }

    /// `I<flags>\t<max_rows>\t<path>[\t<user>]`: rows of (key, value).
    fn iterate(&self, path: &str, user: Option<&str>) -> Vec<(String, String)> {
        let _ = (path, user);
        Vec::new()
    }

    /// `S<txid>\t<key>[\t<value>]` inside a transaction of `user`. Returning false makes
    /// the transaction's commit answer `F`.
    fn set(&self, user: &str, key: &str, value: Option<&str>) -> bool {
        let _ = (user, key, value);
        false
    }
}

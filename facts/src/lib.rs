//! Facts about a Debian host.
//!
//! A fact is a shell snippet plus a parser of its output. The snippets of one run are joined
//! into a single script ([`Query::script`]) so that everything the planner needs arrives in
//! one remote command; [`Query::parse`] splits the output back into typed [`HostFacts`].

// a library reports through its caller (errors, the Reporter), never on the terminal
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod accounts;
mod answers;
mod batch;
mod error;
mod os;
mod packages;
mod paths;
mod remote;
pub mod shell;
mod units;

pub use accounts::{Group, User};
pub use answers::Answers;
pub use batch::{HostFacts, Query};
pub use error::Error;
pub use os::OsRelease;
pub use packages::Package;
pub use paths::{PathKind, PathState};
pub use remote::{ExecOutput, LineSplitter, Remote, RemoteError};
pub use units::Unit;

//! Resources, plans and apply.
//!
//! A [`State`] is an ordered list of resources: what the host should look like. It names the
//! facts it needs ([`State::query`]); diffed against those facts it becomes a [`Plan`], an
//! ordered list of changes with the exact commands, descriptions and file diffs. The dry run
//! prints the plan; [`apply`] runs exactly that plan, then the restart handlers.

// a library reports through its caller (errors, the Reporter), never on the terminal
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod apply;
pub mod apt;
mod diff;
mod error;
mod plan;
mod report;
mod resource;
mod restarts;
mod script;
mod state;
pub mod step;
mod templates;
mod upload;

pub use apply::{ApplyOptions, Outcome, apply, fetch_old_contents, stale_temp_cleanup};
pub use error::Error;
pub use plan::{Action, Change, ChangeKind, Plan, plan};
pub use report::{NullReporter, Reporter, Summary};
pub use resource::{
    Command, Directory, Download, File, Group, Guard, Notify, PROTECTED_TREES, Package, Removed,
    RemovedTree, Resource, Service, Symlink, User,
};
pub use restarts::PENDING_FILE;
pub use state::State;
pub use templates::Templates;

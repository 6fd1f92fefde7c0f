//! chatmail-deploy: the CLI's building blocks, usable from examples and tests.

pub mod bench;
pub mod commands;
pub mod deploy;
pub mod dns;
pub mod output;
pub mod probe;
pub mod relay;
pub mod test_hooks;
pub mod transport;
pub mod www;

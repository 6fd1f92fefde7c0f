//! chatmail-deploy: the CLI's building blocks, usable from examples and tests.

pub mod deploy;
pub mod output;
pub mod transport;

//! chatmail-deploy: the CLI's building blocks, usable from examples and tests.

pub mod bench;
pub mod commands;
pub mod dns;
pub mod probe;
pub mod relay;
pub mod www;

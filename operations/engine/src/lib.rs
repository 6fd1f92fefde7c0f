//! The deploy runtime on top of `facts` and `operations`: how commands reach the host
//! ([`transport`]: SSH with ProxyJump, or the local machine, and the run lock), one run from
//! connecting to the summary ([`driver`]), and who hears about it ([`printer`]: the human
//! and JSON reporters).
//!
//! A deploy tool declares a [`operations::State`] (or makes one from the host's facts) and
//! hands it to [`driver::deploy`] or [`driver::deploy_with`].

pub mod driver;
mod error;
pub mod printer;
mod test_hooks;
pub mod transport;

pub use error::{Error, one_line};

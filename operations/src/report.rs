//! How apply tells the outside world what it is doing.

use std::time::Duration;

use crate::{Change, Plan};

/// Receives events while a plan is applied. All methods default to doing nothing.
pub trait Reporter: Sync {
    fn plan_ready(&self, _plan: &Plan) {}
    fn change_started(&self, _change: &Change) {}
    fn change_finished(&self, _change: &Change) {}
    fn note(&self, _message: &str) {}
    /// A change succeeded but said something the operator must read: a stderr line of
    /// its command that starts with `warning: ` (prefix removed).
    fn warning(&self, _change: &Change, _message: &str) {}
    /// A remote step has been running for `elapsed` (called about once a second after the
    /// first few): `latest` is its latest line of output, if it printed any.
    fn waiting(&self, _what: &str, _elapsed: Duration, _latest: Option<&str>) {}
    /// The step `what` has ended (whether it was reported as waiting or not).
    fn waiting_over(&self, _what: &str) {}
}

pub struct NullReporter;

impl Reporter for NullReporter {}

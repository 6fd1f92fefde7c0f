//! How apply tells the outside world what it is doing.

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
}

pub struct NullReporter;

impl Reporter for NullReporter {}

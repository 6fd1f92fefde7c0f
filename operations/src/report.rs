//! How a run tells the outside world what it is doing: every event of planning, applying
//! and the driver around them goes to a [`Reporter`] (the human printer, the JSON output, a
//! test's recorder). Nothing in the engine or a model built on it prints by itself.

use std::time::Duration;

use serde::Serialize;

use crate::{Change, Plan};

/// Receives events while a run goes on. All methods default to doing nothing.
pub trait Reporter: Sync {
    /// Progress: what the run is doing now (connecting, gathering facts, a change).
    fn status(&self, _message: &str) {}
    /// A plan is ready to be shown (the dry run's view).
    fn plan_ready(&self, _plan: &Plan) {}
    fn change_started(&self, _change: &Change) {}
    fn change_finished(&self, _change: &Change) {}
    fn note(&self, _message: &str) {}
    /// A change succeeded but said something the operator must read: a stderr line of
    /// its command that starts with `warning: ` (prefix removed).
    fn warning(&self, _change: &Change, _message: &str) {}
    /// Something the operator must read that belongs to no change: about the host as the
    /// run leaves it, or about the inputs the state was made from.
    fn host_warning(&self, _message: &str) {}
    /// A remote step failed: `stderr` is everything it wrote there (its error condenses it).
    fn command_failed(&self, _what: &str, _stderr: &str) {}
    /// A remote step has been running for `elapsed` (called about once a second after the
    /// first few): `latest` is its latest line of output, if it printed any.
    fn waiting(&self, _what: &str, _elapsed: Duration, _latest: Option<&str>) {}
    /// The step `what` has ended (whether it was reported as waiting or not).
    fn waiting_over(&self, _what: &str) {}
    /// The run's result, last.
    fn summary(&self, _summary: &Summary<'_>) {}
    /// The run's cost: time, remote commands, bytes uploaded.
    fn timing(&self, _message: &str) {}
}

pub struct NullReporter;

impl Reporter for NullReporter {}

/// What a run did (or, on a dry run, would do).
///
/// The counts are of resources: every resource of the state is either changed (brought in
/// line by this run) or unchanged, so the two add up to the resources; restarts, reloads and
/// daemon-reloads are counted apart, as they are no resources.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub host: String,
    pub dry_run: bool,
    /// The planned changes and handlers on a dry run, the applied ones otherwise.
    pub changes: Vec<&'a Change>,
    /// Resources changed (or to change, on a dry run).
    pub changed: usize,
    pub unchanged: usize,
    pub resources: usize,
    /// Restarts, reloads and daemon-reloads run (or to run).
    pub handlers: usize,
}

impl Summary<'_> {
    /// `summary: 2 changed, 11 unchanged (13 resources), 1 restart/reload`
    pub fn line(&self) -> String {
        let verb = if self.dry_run { "to change" } else { "changed" };
        let mut line = format!(
            "summary: {} {verb}, {} unchanged ({} resources)",
            self.changed, self.unchanged, self.resources
        );
        if self.handlers > 0 {
            line.push_str(&format!(
                ", {} restart{s}/reload{s}",
                self.handlers,
                s = if self.handlers == 1 { "" } else { "s" }
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(dry_run: bool, changed: usize, handlers: usize) -> String {
        Summary {
            host: "h".into(),
            dry_run,
            changes: vec![],
            changed,
            unchanged: 13 - changed,
            resources: 13,
            handlers,
        }
        .line()
    }

    #[test]
    fn the_summary_counts_resources_and_handlers_apart() {
        assert_eq!(
            summary(false, 0, 0),
            "summary: 0 changed, 13 unchanged (13 resources)"
        );
        assert_eq!(
            summary(true, 2, 1),
            "summary: 2 to change, 11 unchanged (13 resources), 1 restart/reload"
        );
        assert_eq!(
            summary(false, 13, 3),
            "summary: 13 changed, 0 unchanged (13 resources), 3 restarts/reloads"
        );
    }
}

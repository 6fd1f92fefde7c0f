//! All output of a run: the plan, progress, applied changes and the summary line.
//!
//! stdout carries the plan, the changes and the final `summary:` line; stderr carries progress
//! (a spinner on a terminal) and timing. A step that runs longer than a few seconds says what
//! it waits for: on the spinner line on a terminal, as `waiting:` lines on stdout in a log.
//!
//! The summary counts resources: every resource of the state is either changed (brought in
//! line by this run) or unchanged, so the two add up to the resources; restarts, reloads and
//! daemon-reloads are counted apart, as they are no resources.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use operations::{Change, Plan, Reporter};

use serde_json::json;

/// What the last line reports.
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

/// In a log, a waiting step gets a line at most this often (sooner when its output changes).
const WAIT_LINE_EVERY: Duration = Duration::from_secs(10);
const WAIT_LINE_CHANGED: Duration = Duration::from_secs(3);

pub struct Printer {
    json: bool,
    color: bool,
    bar: Mutex<Option<ProgressBar>>,
    interactive: bool,
    /// Steps reported as waiting: when and with which output the last `waiting:` line went.
    waits: Mutex<BTreeMap<String, (Instant, Option<String>)>>,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Printer {
    pub fn new(json: bool) -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            json,
            color,
            bar: Mutex::new(None),
            interactive: std::io::stderr().is_terminal(),
            waits: Mutex::new(BTreeMap::new()),
        }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// Progress message on a terminal; silent otherwise.
    pub fn status(&self, message: &str) {
        if !self.interactive || self.json {
            return;
        }
        let mut bar = self.bar.lock().unwrap();
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        b.set_message(message.to_string());
    }

    fn clear_status(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }

    /// A line on stdout that does not tear the progress spinner.
    fn line(&self, text: &str) {
        let bar = self.bar.lock().unwrap();
        match bar.as_ref() {
            Some(b) => b.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// The dry run's view: every change, with file diffs.
    pub fn plan(&self, plan: &Plan) {
        self.clear_status();
        if self.json {
            return;
        }
        for change in plan.changes.iter().chain(&plan.handlers) {
            self.line(&format!("{} {}", self.paint(BOLD, "~"), change.description));
            if let Some(diff) = &change.diff {
                let mut out = String::new();
                for l in diff.lines() {
                    let painted = if l.starts_with("+++") || l.starts_with("---") {
                        self.paint(BOLD, l)
                    } else if l.starts_with('+') {
                        self.paint(GREEN, l)
                    } else if l.starts_with('-') {
                        self.paint(RED, l)
                    } else if l.starts_with("@@") {
                        self.paint(CYAN, l)
                    } else {
                        l.to_string()
                    };
                    out.push_str("    ");
                    out.push_str(&painted);
                    out.push('\n');
                }
                print!("{out}");
            }
        }
    }

    /// The last line of output (or the JSON document). `changes` are the planned changes on
    /// a dry run and the applied ones otherwise.
    pub fn summary(&self, summary: &Summary<'_>) {
        self.clear_status();
        if self.json {
            let doc = json!({
                "host": summary.host,
                "dry_run": summary.dry_run,
                "changes": summary.changes,
                "changed": if summary.dry_run { 0 } else { summary.changed },
                "to_change": if summary.dry_run { summary.changed } else { 0 },
                "unchanged": summary.unchanged,
                "resources": summary.resources,
                "handlers": summary.handlers,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("plan serializes")
            );
            return;
        }
        println!("{}", summary.line());
        let _ = std::io::stdout().flush();
    }

    /// A warning about the host as it is after the run (stderr, in JSON mode too).
    pub fn host_warning(&self, message: &str) {
        self.info(&format!("{} {message}", self.paint(RED, "warning:")));
    }

    pub fn info(&self, message: &str) {
        let bar = self.bar.lock().unwrap();
        match bar.as_ref() {
            Some(b) => b.suspend(|| eprintln!("{message}")),
            None => eprintln!("{message}"),
        }
    }
}

/// `text` cut to `max` characters, marked when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 3).collect::<String>() + "..."
    }
}

impl Reporter for Printer {
    fn change_started(&self, change: &Change) {
        self.status(&change.description);
    }

    fn change_finished(&self, change: &Change) {
        if !self.json {
            self.line(&format!(
                "{} {}",
                self.paint(GREEN, "changed:"),
                change.description
            ));
        }
    }

    fn warning(&self, change: &Change, message: &str) {
        self.info(&format!(
            "{} {}: {message}",
            self.paint(RED, "warning:"),
            change.description
        ));
    }

    fn waiting(&self, what: &str, elapsed: Duration, latest: Option<&str>) {
        let what = shorten(what, 80);
        let secs = elapsed.as_secs();
        let said = latest.map(|l| shorten(l, 200));
        if self.interactive && !self.json {
            self.status(&match &said {
                Some(l) => format!("{what} ({secs} s): {l}"),
                None => format!("{what} ({secs} s, no output yet)"),
            });
            return;
        }
        if self.json {
            return;
        }
        let mut waits = self.waits.lock().unwrap();
        let due = match waits.get(&what) {
            None => true,
            Some((at, before)) => {
                at.elapsed() >= WAIT_LINE_EVERY
                    || (*before != said && at.elapsed() >= WAIT_LINE_CHANGED)
            }
        };
        if due {
            waits.insert(what.clone(), (Instant::now(), said.clone()));
            drop(waits);
            self.line(&match said {
                Some(l) => format!("waiting: {what} ({secs} s): {l}"),
                None => format!("waiting: {what} ({secs} s): no output yet"),
            });
        }
    }

    fn waiting_over(&self, what: &str) {
        self.waits.lock().unwrap().remove(&shorten(what, 80));
    }

    fn note(&self, message: &str) {
        self.clear_status();
        println!("note: {message}");
        let _ = std::io::stdout().flush();
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

    #[test]
    fn long_names_are_cut() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abcdefg", 6), "abc...");
    }
}

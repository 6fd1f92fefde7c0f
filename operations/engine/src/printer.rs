//! The reporters a run prints through: [`Human`] for people and logs, [`Json`] for `--json`.
//!
//! Human: stdout carries the plan, the changes and the final `summary:` line; stderr carries
//! progress (a spinner on a terminal), warnings and timing. A step that runs longer than a
//! few seconds says what it waits for: on the spinner line on a terminal, as `waiting:` lines
//! on stdout in a log. Json: stdout carries one JSON document (the summary with its
//! changes), stderr the warnings and timing.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use operations::{Change, Plan, Reporter, Summary};

use serde_json::json;

/// In a log, a waiting step gets a line at most this often (sooner when its output changes).
const WAIT_LINE_EVERY: Duration = Duration::from_secs(10);
const WAIT_LINE_CHANGED: Duration = Duration::from_secs(3);

/// The human printer.
pub struct Human {
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

impl Human {
    pub fn new() -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Human {
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
    fn spin(&self, message: &str) {
        if !self.interactive {
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
    fn show_plan(&self, plan: &Plan) {
        self.clear_status();
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

    /// A line on stderr that does not tear the progress spinner.
    fn info(&self, message: &str) {
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

impl Default for Human {
    fn default() -> Self {
        Human::new()
    }
}

impl Reporter for Human {
    fn status(&self, message: &str) {
        self.spin(message);
    }

    fn plan_ready(&self, plan: &Plan) {
        self.show_plan(plan);
    }

    fn change_started(&self, change: &Change) {
        self.spin(&change.description);
    }

    fn change_finished(&self, change: &Change) {
        self.line(&format!(
            "{} {}",
            self.paint(GREEN, "changed:"),
            change.description
        ));
    }

    fn host_warning(&self, message: &str) {
        self.info(&format!("{} {message}", self.paint(RED, "warning:")));
    }

    fn summary(&self, summary: &Summary<'_>) {
        self.clear_status();
        println!("{}", summary.line());
        let _ = std::io::stdout().flush();
    }

    fn timing(&self, message: &str) {
        self.info(message);
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
        if self.interactive {
            self.spin(&match &said {
                Some(l) => format!("{what} ({secs} s): {l}"),
                None => format!("{what} ({secs} s, no output yet)"),
            });
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

/// `--json`: one document on stdout at the end; warnings, notes and timing on stderr.
#[derive(Default)]
pub struct Json;

impl Reporter for Json {
    fn note(&self, message: &str) {
        eprintln!("note: {message}");
    }

    fn warning(&self, change: &Change, message: &str) {
        eprintln!("warning: {}: {message}", change.description);
    }

    fn host_warning(&self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn summary(&self, summary: &Summary<'_>) {
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
    }

    fn timing(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// The reporter `--json` asks for.
pub fn for_output(json: bool) -> Box<dyn Reporter> {
    if json {
        Box::new(Json)
    } else {
        Box::new(Human::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abcdefg", 6), "abc...");
    }
}

//! All output of a run: the plan, progress, applied changes and the summary line.
//!
//! stdout carries the plan, the changes and the final `summary:` line; stderr carries progress
//! (a spinner on a terminal, nothing extra in a CI log) and timing.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use operations::{Change, Plan, Reporter};

use serde_json::json;

/// What the last line reports.
pub struct Summary<'a> {
    pub host: String,
    pub dry_run: bool,
    pub changes: Vec<&'a Change>,
    pub count: usize,
    pub unchanged: usize,
}

pub struct Printer {
    json: bool,
    color: bool,
    bar: Mutex<Option<ProgressBar>>,
    interactive: bool,
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
        let Summary {
            host,
            dry_run,
            changes,
            count,
            unchanged,
        } = summary;
        if self.json {
            let doc = json!({
                "host": host,
                "dry_run": dry_run,
                "changes": changes,
                "changed": if *dry_run { 0 } else { *count },
                "to_change": if *dry_run { *count } else { 0 },
                "unchanged": unchanged,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("plan serializes")
            );
            return;
        }
        if *dry_run {
            println!("summary: {count} to change, {unchanged} unchanged");
        } else {
            println!("summary: {count} changed, {unchanged} unchanged");
        }
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

    fn note(&self, message: &str) {
        self.clear_status();
        println!("note: {message}");
        let _ = std::io::stdout().flush();
    }
}

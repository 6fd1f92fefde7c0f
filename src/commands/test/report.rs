//! The check lines: each check owns a slot that it fills once, from whatever task runs
//! it; lines are printed in registration order as soon as the slots before them are
//! filled, so output is stable however the checks interleave.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::Relay;
use crate::probe::tls::is_certificate_error;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Fail(String),
    Skip(String),
}

/// The sending half of a check's line; dropping it unfilled reports the check as not run.
pub struct Slot {
    tx: oneshot::Sender<Outcome>,
    relay: Arc<Relay>,
}

impl Slot {
    pub fn ok(self, detail: impl Into<String>) {
        let _ = self.tx.send(Outcome::Ok(detail.into()));
    }

    pub fn fail(self, reason: impl Into<String>) {
        let _ = self.tx.send(Outcome::Fail(reason.into()));
    }

    pub fn skip(self, reason: impl Into<String>) {
        let _ = self.tx.send(Outcome::Skip(reason.into()));
    }

    /// An error as a one-line failure, with the `--insecure` hint where it applies.
    pub fn error(self, err: &anyhow::Error) {
        let reason = explain(err, &self.relay);
        self.fail(reason);
    }

    /// `Ok(detail)` passes, `Err` fails.
    pub fn result(self, result: anyhow::Result<String>) {
        match result {
            Ok(detail) => self.ok(detail),
            Err(e) => self.error(&e),
        }
    }
}

/// One line for an error chain; certificate failures on self-signed relays point at
/// `--insecure`.
pub fn explain(err: &anyhow::Error, relay: &Relay) -> String {
    let mut reason = format!("{err:#}").replace(['\r', '\n'], " ");
    let self_signed = relay.host.starts_with('_') || relay.ipv4;
    if !relay.insecure
        && (is_certificate_error(err) || reason.contains("certificate"))
        && self_signed
    {
        reason.push_str(" (self-signed relay: use --insecure)");
    }
    reason
}

pub struct Report {
    relay: Arc<Relay>,
    lines: Vec<(&'static str, oneshot::Receiver<Outcome>)>,
}

impl Report {
    pub fn new(relay: Arc<Relay>) -> Report {
        Report {
            relay,
            lines: Vec::new(),
        }
    }

    /// Register a check; its line comes after all those registered before.
    pub fn check(&mut self, name: &'static str) -> Slot {
        let (tx, rx) = oneshot::channel();
        self.lines.push((name, rx));
        Slot {
            tx,
            relay: self.relay.clone(),
        }
    }

    /// Print each line as it is decided, then the summary; true when any check failed.
    pub async fn print(self) -> bool {
        let started = Instant::now();
        let total = self.lines.len();
        let (mut failed, mut skipped) = (Vec::new(), 0);
        for (name, rx) in self.lines {
            let outcome = rx
                .await
                .unwrap_or_else(|_| Outcome::Fail("not run: a step it depends on failed".into()));
            println!("{}", line(name, &outcome));
            match outcome {
                Outcome::Fail(_) => failed.push(name),
                Outcome::Skip(_) => skipped += 1,
                Outcome::Ok(_) => {}
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if failed.is_empty() {
            let passed = total - skipped;
            let skipped = if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            };
            println!("test: {passed} passed{skipped} in {secs:.1} s");
            false
        } else {
            println!(
                "test: {} of {total} failed: {}",
                failed.len(),
                failed.join(", ")
            );
            true
        }
    }
}

/// `  ok   name: detail`, `  FAIL name: reason`, `  skip name: reason` (status's look).
fn line(name: &str, outcome: &Outcome) -> String {
    let (mark, text) = match outcome {
        Outcome::Ok(d) => ("ok  ", d),
        Outcome::Fail(r) => ("FAIL", r),
        Outcome::Skip(r) => ("skip", r),
    };
    if text.is_empty() {
        format!("  {mark} {name}")
    } else {
        format!("  {mark} {name}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_status() {
        assert_eq!(
            line("TLS 993", &Outcome::Ok(String::new())),
            "  ok   TLS 993"
        );
        assert_eq!(
            line(
                "cleartext refused",
                &Outcome::Fail("accepted: 250 Ok".into())
            ),
            "  FAIL cleartext refused: accepted: 250 Ok"
        );
        assert_eq!(
            line("mta-sts", &Outcome::Skip("IP relay".into())),
            "  skip mta-sts: IP relay"
        );
    }
}

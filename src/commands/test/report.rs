//! The check lines: each check owns a slot that it fills once, from whatever task runs
//! it; lines are printed in registration order as soon as the slots before them are
//! filled, so output is stable however the checks interleave.

use std::io::Write;
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
        self.write(&mut std::io::stdout()).await
    }

    async fn write(self, out: &mut impl Write) -> bool {
        let started = Instant::now();
        let total = self.lines.len();
        let (mut failed, mut skipped) = (Vec::new(), 0);
        let mut stopped_by = None;
        for (name, rx) in self.lines {
            // checks are registered after the steps they depend on, so the latest
            // failure above an unfilled slot is the one that stopped it
            let outcome = match rx.await {
                Ok(outcome) => {
                    if matches!(outcome, Outcome::Fail(_)) {
                        stopped_by = Some(name);
                    }
                    outcome
                }
                Err(_) => Outcome::Fail(match stopped_by {
                    Some(step) => format!("not run, needs {step:?}"),
                    None => "not run".to_owned(),
                }),
            };
            let _ = writeln!(out, "{}", line(name, &outcome));
            let _ = out.flush();
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
            let _ = writeln!(out, "test: {passed} passed{skipped} in {secs:.1} s");
            false
        } else {
            let _ = writeln!(
                out,
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
    use crate::probe::account::Rules;
    use crate::probe::tls::Connector;
    use std::time::Duration;

    fn relay() -> Arc<Relay> {
        Arc::new(Relay {
            host: "_r.test".into(),
            mail_domain: "_r.test".into(),
            rules: Rules {
                mail_domain: "_r.test".into(),
                username_min_length: 9,
                username_max_length: 9,
                password_min_length: 9,
            },
            connector: Connector::new(true, Duration::from_secs(1)).unwrap(),
            insecure: false,
            timeout: Duration::from_secs(1),
            ipv4: false,
        })
    }

    #[tokio::test]
    async fn lines_keep_registration_order_and_name_what_stopped_a_check() {
        let mut report = Report::new(relay());
        let a = report.check("a");
        let b = report.check("b");
        let c = report.check("c");
        let d = report.check("d");
        // filled out of order, from other tasks
        tokio::spawn(async move {
            d.skip("not here");
            drop(c);
            b.fail("broken");
            a.ok("");
        });
        let mut out = Vec::new();
        assert!(report.write(&mut out).await);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  ok   a\n  FAIL b: broken\n  FAIL c: not run, needs \"b\"\n  skip d: not here\n\
             test: 2 of 4 failed: b, c\n"
        );
    }

    #[test]
    fn certificate_errors_on_self_signed_relays_suggest_insecure() {
        let err = anyhow::anyhow!("invalid peer certificate: UnknownIssuer");
        assert!(explain(&err, &relay()).ends_with("(self-signed relay: use --insecure)"));
        let err = anyhow::anyhow!("connection refused");
        assert_eq!(explain(&err, &relay()), "connection refused");
    }

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

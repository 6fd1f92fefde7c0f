//! `bench`: how fast a live relay is for its users. Message round trips (send, then wait for
//! the recipient's IMAP IDLE to report the message) on one relay and optionally to a second
//! one, and how many accounts per second first logins create.

mod accounts;
mod roundtrip;
mod stats;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use accounts::AccountRate;
pub use roundtrip::{Case, Pace, RoundTrips};
pub use stats::Summary;

use crate::probe::account::Rules;
use crate::probe::tls::Connector;

/// What to measure.
pub struct Plan {
    pub relay: Rules,
    pub second_relay: Option<Rules>,
    pub pace: Pace,
    /// Accounts to create for the creation rate (0: skip).
    pub accounts: usize,
    pub concurrency: usize,
    pub show_progress: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub relay: String,
    pub interval_s: f64,
    pub latency: Vec<RoundTrips>,
    pub accounts: Option<AccountRate>,
}

impl Report {
    /// Messages that were sent and never arrived, or were refused.
    pub fn failures(&self) -> usize {
        self.latency.iter().map(|r| r.lost + r.refused).sum()
    }
}

pub async fn run(connector: &Connector, plan: &Plan) -> anyhow::Result<Report> {
    let mut cases = vec![Case {
        name: "same relay".into(),
        from: plan.relay.clone(),
        to: plan.relay.clone(),
    }];
    if let Some(second) = &plan.second_relay {
        cases.push(Case {
            name: "cross relay".into(),
            from: plan.relay.clone(),
            to: second.clone(),
        });
    }
    let mut latency = Vec::new();
    for case in &cases {
        let bar = progress(
            plan.show_progress,
            plan.pace.count,
            format!("{} -> {}", case.from.mail_domain, case.to.mail_domain),
        );
        latency.push(roundtrip::measure(connector, case, plan.pace, || bar.inc(1)).await?);
        bar.finish_and_clear();
    }
    let accounts = if plan.accounts > 0 {
        let bar = progress(plan.show_progress, plan.accounts, "accounts".into());
        let rate = accounts::measure(
            connector,
            &plan.relay,
            plan.accounts,
            plan.concurrency,
            || bar.inc(1),
        )
        .await?;
        bar.finish_and_clear();
        Some(rate)
    } else {
        None
    };
    Ok(Report {
        relay: plan.relay.mail_domain.clone(),
        interval_s: plan.pace.interval.as_secs_f64(),
        latency,
        accounts,
    })
}

fn progress(show: bool, len: usize, what: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64).with_message(what);
    if let Ok(style) = ProgressStyle::with_template("{msg:<40} {bar:30} {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The report as text, one line per measurement.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.latency {
        let s = &r.latency;
        out.push_str(&format!(
            "{:<12} {} -> {}: {}/{} received, min {:.1} / p50 {:.1} / p99 {:.1} / max {:.1} ms, lost {}{}\n",
            r.case,
            r.from,
            r.to,
            r.received,
            r.sent,
            s.min_ms,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            r.lost,
            match (&r.refused, &r.first_refusal) {
                (0, _) | (_, None) => String::new(),
                (n, Some(reply)) => format!(", refused {n} (first: {reply})"),
            }
        ));
    }
    if let Some(a) = &report.accounts {
        out.push_str(&format!(
            "{:<12} {}: {} created by first login in {:.2} s = {:.1}/s ({} at a time), login p50 {:.0} / max {:.0} ms\n",
            "accounts", a.relay, a.count, a.seconds, a.per_second, a.concurrency, a.login.p50_ms, a.login.max_ms
        ));
    }
    out
}

//! Account creation rate: fresh accounts made by their first IMAP login, a few at a time,
//! as many clients signing up at once would.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::task::JoinSet;

use super::stats::Summary;
use crate::probe::account::{Account, Rules};
use crate::probe::imap::Imap;
use crate::probe::tls::Connector;

#[derive(Debug, Clone, Serialize)]
pub struct AccountRate {
    pub relay: String,
    pub count: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Connect, TLS, LOGIN (which creates the account) and LOGOUT of one account.
    pub login: Summary,
}

/// Creates `count` accounts on the relay of `rules`, `concurrency` logins at a time.
/// Every login must succeed: a refused first login means the relay refuses new accounts.
pub async fn measure(
    connector: &Connector,
    rules: &Rules,
    count: usize,
    concurrency: usize,
    mut progress: impl FnMut(),
) -> anyhow::Result<AccountRate> {
    let host = host_of(&rules.mail_domain);
    let concurrency = concurrency.clamp(1, count.max(1));
    let started = Instant::now();
    let mut running = JoinSet::new();
    let mut times = Vec::with_capacity(count);
    let mut next = 0;
    while times.len() < count {
        while next < count && running.len() < concurrency {
            let (connector, host, account) =
                (connector.clone(), host.clone(), Account::fresh(rules));
            running.spawn(async move { create(&connector, &host, &account).await });
            next += 1;
        }
        let took = running
            .join_next()
            .await
            .expect("a login is running")
            .context("login task")??;
        times.push(took);
        progress();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(AccountRate {
        relay: rules.mail_domain.clone(),
        count,
        concurrency,
        seconds,
        per_second: count as f64 / seconds,
        login: Summary::of(&times),
    })
}

async fn create(connector: &Connector, host: &str, account: &Account) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut imap = Imap::connect_tls(connector, host, 993).await?;
    let reply = imap.login(&account.address, &account.password).await?;
    if !reply.is_ok() {
        bail!(
            "first login of {} refused: {}",
            account.address,
            reply.summary()
        );
    }
    imap.logout().await;
    Ok(started.elapsed())
}

/// The host to connect to for a mail domain (`[1.2.3.4]` on IPv4 relays).
pub fn host_of(mail_domain: &str) -> String {
    mail_domain
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

//! `test`: check a live relay end to end from the operator's machine, as chat clients
//! reach it. Checks run concurrently where independent; each prints one line in a fixed
//! order, then a summary; any failure makes the exit status 1.

mod checks;
mod report;
mod web;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::ConfigArg;
use crate::probe::account::Rules;
use crate::probe::tls::Connector;
use report::Report;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Accept any TLS certificate (self-signed relays: `_` domains and IP addresses)
    #[arg(long)]
    insecure: bool,
    /// Seconds to wait for each connection, handshake, reply and the test message
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    timeout: u64,
}

/// What every check needs to know about the relay.
pub(crate) struct Relay {
    /// Where to connect and the TLS name (the bare IP on IPv4 relays).
    pub host: String,
    /// The domain part of addresses (`[ip]` on IPv4 relays).
    pub mail_domain: String,
    pub rules: Rules,
    pub connector: Connector,
    pub insecure: bool,
    pub timeout: Duration,
    pub ipv4: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = chatmaild::config::Config::load(&args.config.config)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let relay = Arc::new(Relay {
        host: config.mail_domain_bare.clone(),
        mail_domain: config.mail_domain.clone(),
        rules: Rules::from_config(&config),
        connector: Connector::new(args.insecure, timeout)?,
        insecure: args.insecure,
        timeout,
        ipv4: config.ipv4_relay.is_some(),
    });
    // every check needs the address: one clear error instead of the same failure in each
    resolves(&relay.host, timeout).await?;
    println!("testing {}:", relay.host);
    let mut report = Report::new(relay.clone());
    checks::start(&relay, &mut report);
    web::start(&relay, &mut report);
    let failed = report.print().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The relay's name must resolve before anything is tried.
async fn resolves(host: &str, timeout: Duration) -> anyhow::Result<()> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, 443)))
        .await
        .map_err(|_| anyhow::anyhow!("cannot resolve {host}: no answer within {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("cannot resolve {host}: {e}"))?
        .count();
    if found == 0 {
        anyhow::bail!("{host} has no address");
    }
    Ok(())
}

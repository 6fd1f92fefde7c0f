//! `bench`: message round-trip latency and account creation rate of a live relay.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use super::ConfigArg;
use crate::bench::{self, Pace, Plan};
use crate::probe::account::Rules;
use crate::probe::tls::Connector;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Messages to send per case
    #[arg(long, short = 'c', default_value_t = 50)]
    count: usize,
    /// Seconds between two sends (the relay limits senders to max_user_send_per_minute)
    #[arg(long, short = 'i', default_value_t = 1.1)]
    interval: f64,
    /// Seconds to wait for late messages after the last send
    #[arg(long, default_value_t = 30.0)]
    linger: f64,
    /// A second relay's mail domain: also measure messages from this relay to it
    /// (its account rules are assumed to be this relay's)
    #[arg(long, value_name = "DOMAIN")]
    relay2: Option<String>,
    /// Accounts to create for the account creation rate (0 skips it)
    #[arg(long, default_value_t = 20)]
    accounts: usize,
    /// Logins at a time while creating accounts
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Accept any certificate (relays with self-signed certificates)
    #[arg(long)]
    insecure: bool,
    /// Print the results as one JSON object
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.config.config;
    if !path.exists() {
        bail!("expecting {} to exist, run init first?", path.display());
    }
    if !(args.interval.is_finite() && args.interval >= 0.0 && args.linger >= 0.0) {
        bail!("--interval and --linger must be seconds (0 or more)");
    }
    let config = chatmaild::config::Config::load(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let relay = Rules::from_config(&config);
    let second_relay = args.relay2.map(|domain| Rules {
        mail_domain: domain,
        ..relay.clone()
    });
    let connector = Connector::new(args.insecure, Duration::from_secs(20))?;
    let plan = Plan {
        relay,
        second_relay,
        pace: Pace {
            count: args.count,
            interval: Duration::from_secs_f64(args.interval),
            linger: Duration::from_secs_f64(args.linger),
        },
        accounts: args.accounts,
        concurrency: args.concurrency,
        show_progress: !args.json && std::io::stderr().is_terminal(),
    };
    let report = bench::run(&connector, &plan).await.map_err(|e| {
        if crate::probe::tls::is_certificate_error(&e) && config.mail_domain.starts_with('_') {
            e.context("the relay's certificate is self-signed: pass --insecure")
        } else {
            e
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", bench::render(&report));
    }
    let failures = report.failures();
    if failures > 0 {
        eprintln!("bench: {failures} message(s) lost or refused");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! One module per subcommand.

mod bench;
mod dns;
mod init;
mod run;
mod status;
mod test;
mod webdev;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chatmail-deploy",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "Deploy and operate chatmail relays"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--version`: the version, the commit, and which relay binaries this program carries.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {})\n{}",
        env!("CARGO_PKG_VERSION"),
        env!("CHATMAIL_DEPLOY_COMMIT"),
        crate::relay::embedded::summary()
    )
});

/// Where chatmail.ini is (shared by the commands that read it).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The relay's chatmail.ini
    #[arg(
        long,
        env = "CHATMAIL_INI",
        default_value = "chatmail.ini",
        value_name = "FILE"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a chatmail.ini for a new relay
    Init(init::Args),
    /// Deploy the relay to a host (or show what would change)
    Run(run::Args),
    /// Show the state of a deployed relay; fails when a unit is not active
    Status(status::Args),
    /// Build the web pages locally, serve them on localhost, rebuild on changes
    Webdev(webdev::Args),
    /// Check the relay's DNS records and print the zone-file lines to add or fix
    Dns(dns::Args),
    /// Check a live relay end to end: TLS, accounts, encrypted mail, refusals, web endpoints
    Test(test::Args),
    /// Measure a live relay: message round trips over IMAP IDLE and account creation rate
    Bench(bench::Args),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Init(args) => init::run(args),
            Command::Run(args) => run::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Webdev(args) => webdev::run(args).await,
            Command::Dns(args) => dns::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Test(args) => test::run(args).await,
        }
    }
}

//! chatmail-deploy: deploy and operate chatmail relays.

use std::process::ExitCode;

use chatmail_deploy::commands::Cli;
use chatmail_deploy::deploy::run_main;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_main(cli.run())
}

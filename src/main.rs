//! chatmail-deploy: deploy and operate chatmail relays.

use std::process::ExitCode;

use chatmail_deploy::commands::Cli;
use clap::Parser;
use engine::driver::run_main;

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_main(cli.run())
}

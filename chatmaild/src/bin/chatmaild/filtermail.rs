//! `filtermail <chatmail.ini> (outgoing|incoming|transport)`: the relay's SMTP filter.

use std::ffi::OsString;
use std::process::ExitCode;

use chatmaild::config::Config;
use chatmaild::filtermail::{self, Mode, Settings};

pub fn main(args: Vec<OsString>) -> ExitCode {
    chatmaild::logging::init();
    // mtail and the tests read filtermail's info lines, so info is the default level here.
    if std::env::var_os("CHATMAILD_LOG").is_none() {
        let level = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Info);
        log::set_max_level(level);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("filtermail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<OsString>) -> Result<(), String> {
    let [_, ini, mode] = &args[..] else {
        return Err("usage: filtermail <chatmail.ini> (outgoing|incoming|transport)".into());
    };
    let mode: Mode = mode.to_string_lossy().parse()?;
    let config = Config::load(ini).map_err(|e| e.to_string())?;
    let settings = Settings::from_config(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        // SIGTERM (systemctl stop/restart): stop accepting, finish what was accepted, exit 0
        let shutdown = chatmaild::shutdown::Shutdown::on_signals()?;
        filtermail::run(settings, mode, shutdown).await
    })
}

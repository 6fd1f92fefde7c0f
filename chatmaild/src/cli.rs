//! Shared start-up code for the dict service binaries (`<name> <socket> <ini>`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::dict::{self, DictHandler};

/// Parse `<socket> <ini>` from the command line, or explain the usage.
pub fn socket_and_ini(program: &str) -> Result<(PathBuf, PathBuf), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [socket, ini] => Ok((socket.into(), ini.into())),
        _ => Err(format!("usage: {program} <socket-path> <chatmail.ini>")),
    }
}

/// Run a dict service: log to stderr, load the config, build the handler (within the tokio
/// runtime), serve the socket until SIGTERM/SIGINT. Fatal errors are printed and give a non-zero exit code.
pub fn run_dict_service<H, F>(program: &str, make_handler: F) -> ExitCode
where
    H: DictHandler,
    F: FnOnce(Config) -> Result<H, String>,
{
    crate::logging::init();
    let result = (|| {
        let (socket, ini) = socket_and_ini(program)?;
        let config = Config::load(&ini).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start runtime: {e}"))?;
        runtime.block_on(async {
            // Inside the runtime so that handlers can spawn background tasks.
            let handler = Arc::new(make_handler(config)?);
            let listener = dict::bind(&socket)
                .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
            tokio::select! {
                r = dict::serve_listener(listener, handler) => r.map_err(|e| e.to_string()),
                r = shutdown_signal() => r,
            }
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

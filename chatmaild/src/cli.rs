//! Shared start-up code for the dict service binaries (`<name> <socket> <ini>`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::activation::Passed;
use crate::config::Config;
use crate::dict::{self, DictHandler};
use crate::shutdown::Shutdown;

/// Parse `<socket> <ini>` from the command line, or explain the usage.
pub fn socket_and_ini(program: &str) -> Result<(PathBuf, PathBuf), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [socket, ini] => Ok((socket.into(), ini.into())),
        _ => Err(format!("usage: {program} <socket-path> <chatmail.ini>")),
    }
}

/// Run a dict service: log to stderr, load the config, build the handler (within the tokio
/// runtime), serve the socket (passed by systemd's socket unit, else bound here) until
/// SIGTERM/SIGINT, then let the connections finish. Fatal errors are printed and give a
/// non-zero exit code.
pub fn run_dict_service<H, F>(program: &str, make_handler: F) -> ExitCode
where
    H: DictHandler,
    F: FnOnce(Config) -> Result<H, String>,
{
    crate::logging::init();
    let result = (|| -> Result<(), String> {
        let (socket, ini) = socket_and_ini(program)?;
        let config = Config::load(&ini).map_err(|e| e.to_string())?;
        let mut passed = Passed::from_env()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start runtime: {e}"))?;
        runtime.block_on(async {
            let shutdown = Shutdown::on_signals()?;
            // Inside the runtime so that handlers can spawn background tasks.
            let handler = Arc::new(make_handler(config)?);
            let listener = listen(&mut passed, &socket)
                .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
            dict::serve_listener_until(listener, handler, shutdown).await;
            Ok(())
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

/// The socket systemd passed for `path`, else one bound here.
fn listen(passed: &mut Passed, path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match passed.take_unix(path) {
        Some((listener, name)) => {
            log::info!("{}: socket passed by systemd ({name})", path.display());
            listener.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(listener)
        }
        None => dict::bind(path),
    }
}

//! Shared start-up code for the dict service binaries (`<name> <socket> <ini>`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::activation::Passed;
use crate::config::Config;
use crate::dict::{self, DictHandler};
use crate::shutdown::Shutdown;

/// The name a program was called by: the file name of `args[0]` (`doveauth` for
/// `/usr/local/bin/doveauth`), for its messages.
pub fn program_name(args: &[OsString]) -> String {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parse `<socket> <ini>` from the command line (`args[0]` is the program), or explain
/// the usage.
pub fn socket_and_ini(args: &[OsString]) -> Result<(PathBuf, PathBuf), String> {
    match args {
        [_, socket, ini] => Ok((socket.into(), ini.into())),
        _ => Err(format!(
            "usage: {} <socket-path> <chatmail.ini>",
            program_name(args)
        )),
    }
}

/// Run a dict service: log to stderr, load the config, build the handler (within the tokio
/// runtime), serve the socket (passed by systemd's socket unit, else bound here) until
/// SIGTERM/SIGINT, then let the connections finish. Fatal errors are printed and give a
/// non-zero exit code. `args` is the whole command line, `args[0]` the program's name.
pub fn run_dict_service<H, F>(args: Vec<OsString>, make_handler: F) -> ExitCode
where
    H: DictHandler,
    F: FnOnce(Config) -> Result<H, String>,
{
    let program = program_name(&args);
    crate::logging::init();
    let result = (|| -> Result<(), String> {
        let (socket, ini) = socket_and_ini(&args)?;
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

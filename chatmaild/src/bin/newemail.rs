//! `/new` CGI (run by fcgiwrap): prints random credentials as JSON.
//! Reads `/usr/local/lib/chatmaild/chatmail.ini`, or the path given as first argument.

use std::process::ExitCode;

use chatmaild::config::{Config, DEFAULT_INI_PATH};

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_INI_PATH.to_owned());
    match Config::load(&path) {
        Ok(config) => {
            print!("{}", chatmaild::newemail::cgi_response(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("newemail: {e}");
            print!(
                "Status: 500 Internal Server Error\nContent-Type: text/plain\n\nconfiguration error\n"
            );
            ExitCode::FAILURE
        }
    }
}

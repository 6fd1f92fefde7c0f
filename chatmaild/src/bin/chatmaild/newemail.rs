//! `/new` CGI (run by fcgiwrap): prints random credentials as JSON.
//! Reads `/usr/local/lib/chatmaild/chatmail.ini`, or the path given as first argument.

use std::ffi::OsString;
use std::process::ExitCode;

use chatmaild::config::{Config, DEFAULT_INI_PATH};

pub fn main(args: Vec<OsString>) -> ExitCode {
    let path = args
        .into_iter()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_INI_PATH.into());
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

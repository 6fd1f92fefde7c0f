//! `lastlogin <socket> <chatmail.ini>`: records IMAP logins as password-file mtimes.

use std::ffi::OsString;
use std::process::ExitCode;

use chatmaild::lastlogin::LastLoginDict;

pub fn main(args: Vec<OsString>) -> ExitCode {
    chatmaild::cli::run_dict_service(args, |config| Ok(LastLoginDict::new(config)))
}

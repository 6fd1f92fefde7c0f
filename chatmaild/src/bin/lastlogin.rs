//! `lastlogin <socket> <chatmail.ini>`: records IMAP logins as password-file mtimes.

use std::process::ExitCode;

use chatmaild::lastlogin::LastLoginDict;

fn main() -> ExitCode {
    chatmaild::cli::run_dict_service("lastlogin", |config| Ok(LastLoginDict::new(config)))
}

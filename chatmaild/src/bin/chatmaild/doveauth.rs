//! `doveauth <socket> <chatmail.ini>`: Dovecot passdb/userdb dict service.

use std::ffi::OsString;
use std::process::ExitCode;

use chatmaild::doveauth::AuthDict;
use chatmaild::migrate::migrate_from_db;

pub fn main(args: Vec<OsString>) -> ExitCode {
    chatmaild::cli::run_dict_service(args, |config| {
        // Accounts of relays from before 2024 live in SQLite until the first start.
        migrate_from_db(&config).map_err(|e| format!("migration from SQLite failed: {e}"))?;
        Ok(AuthDict::new(config))
    })
}

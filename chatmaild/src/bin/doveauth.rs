//! `doveauth <socket> <chatmail.ini>`: Dovecot passdb/userdb dict service.

use std::process::ExitCode;

use chatmaild::doveauth::AuthDict;

fn main() -> ExitCode {
    // The one-time migration from the pre-2024 SQLite password database is not
    // implemented; refuse to start rather than silently ignore existing accounts.
    chatmaild::cli::run_dict_service("doveauth", |config| {
        if config.passdb_path.exists() {
            return Err(format!(
                "legacy password database {} exists; migrate it with the Python doveauth first",
                config.passdb_path.display()
            ));
        }
        Ok(AuthDict::new(config))
    })
}

//! Test hooks: environment variables that change what the services do, read only in builds
//! with the `test-hooks` feature (`cargo test` enables it; the shipped release builds do
//! not, so a relay's environment cannot turn off its DKIM checks).

/// Whether this build reads the hooks at all.
pub const ENABLED: bool = cfg!(feature = "test-hooks");

/// The hook variable `name`, `None` in a build without hooks.
pub fn var(name: &str) -> Option<String> {
    if ENABLED {
        std::env::var(name).ok()
    } else {
        None
    }
}

/// `FILTERMAIL_SKIP_DKIM=1`: incoming mail is not DKIM-checked.
pub fn skip_dkim() -> bool {
    var("FILTERMAIL_SKIP_DKIM").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

//! Test hooks of the driver: environment variables read only in builds with the `test-hooks`
//! feature (`cargo test` of the workspace enables it; a release build of a deploy tool does
//! not, so an operator's environment cannot change how a run applies).

/// The hook variable `name`, `None` in a build without hooks.
fn var(name: &str) -> Option<String> {
    if cfg!(feature = "test-hooks") {
        std::env::var(name).ok()
    } else {
        None
    }
}

/// `CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS`: apply waits before the restarts, so that a test
/// can kill the run there.
pub(crate) fn hold_before_restarts() -> bool {
    var("CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS").is_some()
}

/// `CHATMAIL_DEPLOY_DEADLINE_SCALE`: every step's deadline times this factor, so that a test
/// sees a deadline pass in seconds.
pub(crate) fn deadline_scale() -> f64 {
    var("CHATMAIL_DEPLOY_DEADLINE_SCALE")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

//! Test hooks of the deploy tool, read only in builds with chatmaild's `test-hooks` feature
//! (`cargo test` enables it through the dev-dependency; release builds do not).

/// `CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS`: apply waits before the restarts, so that a test
/// can kill the run there.
pub fn hold_before_restarts() -> bool {
    chatmaild::test_hooks::var("CHATMAIL_DEPLOY_HOLD_BEFORE_RESTARTS").is_some()
}

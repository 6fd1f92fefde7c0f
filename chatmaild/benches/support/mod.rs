//! What the benches share: running a relay program as a process (`mod support;`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A relay program's process, killed when dropped (also when the bench panics).
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `bin args...` silent (its logs would cost the bench time) and wait until
/// `listening` says it accepts connections.
pub fn start(bin: &Path, args: &[&std::ffi::OsStr], listening: impl Fn() -> bool) -> Running {
    let child = Command::new(bin)
        .args(args)
        .env_remove("CHATMAILD_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening() {
        assert!(
            Instant::now() < deadline,
            "{} did not listen",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

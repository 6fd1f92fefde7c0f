//! Debian's Chromium, headless, one fresh process and profile per page view.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Screenshot size: wide enough for the desktop layout, tall enough for the longest page's
/// first screens.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 2000;
/// A wedged browser fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(90);

pub struct Chromium {
    binary: PathBuf,
    scratch: PathBuf,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Chromium {
    /// The browser, or `None` (with a note on stderr) when it is missing and browser tests
    /// are not required; with `CHATMAIL_BROWSER_TESTS=1` a missing browser is a failure.
    pub fn find(scratch: &Path) -> Option<Chromium> {
        let binary = PathBuf::from(CHROMIUM);
        if !binary.is_file() {
            let required = std::env::var("CHATMAIL_BROWSER_TESTS").as_deref() == Ok("1");
            assert!(
                !required,
                "CHATMAIL_BROWSER_TESTS=1 but {CHROMIUM} is missing (apt-get install chromium)"
            );
            eprintln!(
                "SKIPPED: {CHROMIUM} not found (apt-get install chromium); set CHATMAIL_BROWSER_TESTS=1 to make this a failure"
            );
            return None;
        }
        Some(Chromium {
            binary,
            scratch: scratch.to_path_buf(),
        })
    }

    /// Renders `url` once: saves what the window shows as a PNG and returns the DOM after
    /// the page's scripts ran, serialised as HTML, so both describe the same page load.
    pub fn render(&self, url: &str, png: &Path) -> String {
        let _ = std::fs::remove_file(png);
        self.run(&[
            format!("--window-size={WIDTH},{HEIGHT}"),
            format!("--screenshot={}", png.display()),
            "--dump-dom".to_string(),
            url.to_string(),
        ])
    }

    /// Runs the browser on a new empty profile; returns its stdout.
    fn run(&self, args: &[String]) -> String {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.join(format!("chromium-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let mut child = Command::new(&self.binary)
            .args([
                "--headless",
                // root in a container: no user namespaces for the sandbox
                "--no-sandbox",
                "--disable-gpu",
                // only loopback may be reached: no QUIC probing, no update/sync/metrics calls
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                // and should a page name another host, it does not even resolve
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--hide-scrollbars",
                // wait for scripts and their fetches (dclogin.js asks /new) before the
                // screenshot or the DOM dump; virtual time skips idle waiting
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start chromium");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} still running after {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(&stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(status.success(), "chromium {args:?}: {status}\n{err}");
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

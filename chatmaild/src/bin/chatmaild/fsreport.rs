//! `chatmail-fsreport [ini] [--days N] [--min-login-age DAYS] [--mdir cur|new|tmp]
//! [--maxnum N] [--textfile PATH] [--legacy-metrics [FILE]]`: storage and login statistics.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use chatmaild::config::{Config, DEFAULT_INI_PATH};
use chatmaild::fsreport::{Report, write_public_atomic};
use chatmaild::mailbox::scan_mailboxes;

#[derive(Clone, Copy, ValueEnum)]
enum Mdir {
    Cur,
    New,
    Tmp,
}

/// Report about filesystem storage usage of all mailboxes and messages
#[derive(Parser)]
struct Args {
    /// Path of chatmail.ini
    #[arg(default_value = DEFAULT_INI_PATH)]
    chatmail_ini: PathBuf,
    /// Pretend that now is DAYS days earlier
    #[arg(long, default_value_t = 0)]
    days: u32,
    /// Only sum up message sizes of addresses whose last login is at least DAYS days old
    #[arg(long = "min-login-age", value_name = "DAYS", default_value_t = 0)]
    min_login_age: u32,
    /// Only consider messages in this Maildir subdirectory for the size buckets
    #[arg(long, value_enum)]
    mdir: Option<Mdir>,
    /// Only look at the first N entries of the mailboxes directory
    #[arg(long)]
    maxnum: Option<usize>,
    /// Write a Prometheus textfile to PATH (a directory gets PATH/fsreport.prom)
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
    /// Write the legacy account metrics file
    #[arg(long = "legacy-metrics", value_name = "FILENAME", num_args = 0..=1,
          default_missing_value = "/var/www/html/metrics")]
    legacy_metrics: Option<PathBuf>,
}

/// `args[0]` is the name it was called by (usage messages show it).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatmail-fsreport: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), chatmaild::Error> {
    let config = Config::load(&args.chatmail_ini)?;
    let now = chatmaild::user::now_secs() as f64 - f64::from(args.days) * 86_400.0;
    let mdir = args.mdir.map(|m| {
        match m {
            Mdir::Cur => "cur",
            Mdir::New => "new",
            Mdir::Tmp => "tmp",
        }
        .to_owned()
    });
    let mut report = Report::new(now, args.min_login_age, mdir);
    for mbox in scan_mailboxes(&config.mailboxes_dir, args.maxnum, &mut std::io::stderr()) {
        report.add_mailbox(&mbox);
    }
    if let Some(path) = &args.textfile {
        let path = if path.is_dir() {
            path.join("fsreport.prom")
        } else {
            path.clone()
        };
        write_public_atomic(&path, &report.textfile())?;
    }
    if let Some(path) = &args.legacy_metrics {
        write_public_atomic(path, &report.legacy_metrics())?;
    }
    if args.textfile.is_none() && args.legacy_metrics.is_none() {
        print!("{}", report.summary());
    }
    Ok(())
}

//! `chatmail-expire [ini] [--days N] [--maxnum N] [-v] [--remove]`: daily expiry of old
//! messages and inactive addresses. Without `--remove` nothing is deleted.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use chatmaild::config::{Config, DEFAULT_INI_PATH};
use chatmaild::expire::Expiry;
use chatmaild::mailbox::scan_mailboxes;

/// Expire mailboxes and messages according to chatmail.ini
#[derive(Parser)]
struct Args {
    /// Path of chatmail.ini
    #[arg(default_value = DEFAULT_INI_PATH)]
    chatmail_ini: PathBuf,
    /// Pretend that now is DAYS days earlier
    #[arg(long)]
    days: Option<u32>,
    /// Only look at the first N entries of the mailboxes directory
    #[arg(long)]
    maxnum: Option<usize>,
    /// Print removed files and mailboxes
    #[arg(short = 'v')]
    verbose: bool,
    /// Actually remove expired files and directories (default: dry run)
    #[arg(long)]
    remove: bool,
}

/// `args[0]` is the name it was called by (usage messages show it).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    let config = match Config::load(&args.chatmail_ini) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatmail-expire: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let now = chatmaild::user::now_secs() as f64 - f64::from(args.days.unwrap_or(0)) * 86_400.0;
    let mut stderr = std::io::stderr();
    let mut info = std::io::stderr();
    let mut exp = Expiry::new(&config, !args.remove, now, args.verbose, &mut info);
    for mbox in scan_mailboxes(&config.mailboxes_dir, args.maxnum, &mut stderr) {
        exp.process_mailbox(&mbox);
    }
    println!("{}", exp.summary(start.elapsed().as_secs_f64()));
    ExitCode::SUCCESS
}

//! `chatmail-quota-expire <target_mb> <mailbox_path>`: run by Dovecot's quota warning to
//! delete the oldest INBOX messages until the mailbox is below the target size.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Remove mailbox messages to stay within a megabyte target
#[derive(Parser)]
struct Args {
    /// Target mailbox size in megabytes
    target_mb: u64,
    /// Path to a user mailbox
    mailbox_path: PathBuf,
}

/// `args[0]` is the name it was called by (usage messages show it).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    let now = chatmaild::user::now_secs() as f64;
    chatmaild::expire::quota_expire(
        &args.mailbox_path,
        args.target_mb,
        now,
        &mut std::io::stderr(),
    );
    ExitCode::SUCCESS
}

//! `chatmail-quota-expire <target_mb> <mailbox_path>`: run by Dovecot's quota warning to
//! delete the oldest INBOX messages until the mailbox is below the target size.

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

fn main() -> ExitCode {
    let args = Args::parse();
    let now = chatmaild::user::now_secs() as f64;
    chatmaild::expire::quota_expire(
        &args.mailbox_path,
        args.target_mb,
        now,
        &mut std::io::stderr(),
    );
    ExitCode::SUCCESS
}

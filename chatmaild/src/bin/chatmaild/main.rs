//! `chatmaild`: every relay service in one program (one upload, one copy of tokio, rustls
//! and hyper instead of eight). It runs as the service it is called by, so a symlink
//! `/usr/local/bin/doveauth -> chatmaild` behaves as the separate `doveauth` did, and the
//! names in units, Dovecot's config and nginx stay the ones operators know. Called as
//! `chatmaild`, the first argument names the service: `chatmaild doveauth <socket> <ini>`.

mod doveauth;
mod expire;
mod filtermail;
mod fsreport;
mod lastlogin;
mod metadata;
mod newemail;
mod quota_expire;

use std::ffi::OsString;
use std::process::ExitCode;

type Main = fn(Vec<OsString>) -> ExitCode;

/// (name, what it does, its main): the names are the programs' upstream names.
const COMMANDS: &[(&str, &str, Main)] = &[
    (
        "doveauth",
        "Dovecot passdb/userdb dict service",
        doveauth::main,
    ),
    ("filtermail", "the relay's SMTP filter", filtermail::main),
    (
        "chatmail-metadata",
        "IMAP METADATA dict and push notifier",
        metadata::main,
    ),
    ("lastlogin", "last-login dict service", lastlogin::main),
    ("chatmail-expire", "daily expiry of old mail", expire::main),
    (
        "chatmail-quota-expire",
        "Dovecot's quota warning: removes the oldest mail",
        quota_expire::main,
    ),
    (
        "chatmail-fsreport",
        "storage and login statistics",
        fsreport::main,
    ),
    (
        "newemail",
        "the /new CGI: random credentials",
        newemail::main,
    ),
];

fn command(name: &str) -> Option<Main> {
    // the CGI keeps upstream's script name
    let name = name.strip_suffix(".py").unwrap_or(name);
    COMMANDS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(.., main)| *main)
}

fn usage() -> String {
    let mut text = String::from(
        "usage: chatmaild <command> [arguments], or called by a command's name (a symlink)\n\ncommands:\n",
    );
    for (name, what, _) in COMMANDS {
        text.push_str(&format!("  {name:<22} {what}\n"));
    }
    text
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(main) = command(&chatmaild::cli::program_name(&args)) {
        return main(args);
    }
    // `chatmaild <command> ...`: the command's own arguments follow, its name first
    let args = args.into_iter().skip(1).collect::<Vec<_>>();
    let first = args.first().map(|a| a.to_string_lossy().into_owned());
    match first.as_deref() {
        Some(name) if let Some(main) = command(name) => main(args),
        Some("--version" | "-V" | "version") => {
            println!("chatmaild {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Some(other) => {
            let names: Vec<&str> = COMMANDS.iter().map(|(n, ..)| *n).collect();
            eprintln!(
                "chatmaild: unknown command {other:?} (one of: {})",
                names.join(", ")
            );
            ExitCode::from(2)
        }
        None => {
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}

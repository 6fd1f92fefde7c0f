//! `init DOMAIN`: a chatmail.ini with every key, defaults commented out.

use std::process::ExitCode;

use anyhow::bail;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay's domain (a leading _ gives a self-signed test relay), or an IPv4 address
    domain: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Overwrite an existing file
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.config.config;
    if path.exists() && !args.force {
        bail!(
            "{} exists already: pass --force to overwrite it",
            path.display()
        );
    }
    if args.domain.trim().is_empty() || args.domain.contains(char::is_whitespace) {
        bail!("invalid domain {:?}", args.domain);
    }
    std::fs::write(path, ini_text(&args.domain))?;
    println!("wrote {} for {}", path.display(), args.domain);
    Ok(ExitCode::SUCCESS)
}

pub fn ini_text(domain: &str) -> String {
    include_str!("../../examples/chatmail.ini.in").replace("@DOMAIN@", domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_parses_with_all_defaults() {
        let dir = std::env::temp_dir().join(format!("init{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chatmail.ini");
        std::fs::write(&path, ini_text("chat.example.org")).unwrap();
        let c = chatmaild::config::Config::load(&path).unwrap();
        assert_eq!(c.mail_domain, "chat.example.org");
        assert_eq!(c.max_user_send_per_minute, 60);
        assert_eq!(c.username_min_length, 9);
        assert!(c.unused_keys.is_empty(), "{:?}", c.unused_keys);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

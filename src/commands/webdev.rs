//! `webdev`: build the relay's web pages into a local folder, serve them on localhost and
//! rebuild when a source changes. The same build that `run` deploys.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Port on 127.0.0.1 to serve the pages on
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Folder the pages are built into
    #[arg(long, default_value = "target/webdev", value_name = "DIR")]
    out: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || serve(args)).await?
}

fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let config = chatmaild::config::Config::load(&args.config.config)?;
    let ini_dir = config
        .inipath
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let source = match crate::www::source(&config, &ini_dir) {
        // the built-in pages cannot be edited: a checkout's www/ is what they are built from
        Some(crate::www::Source::Builtin) => match crate::www::folder_named("www", &ini_dir) {
            Some(folder) => folder,
            None => bail!(
                "www_folder is empty (the built-in pages) and there is no www/ here to edit: run webdev in a checkout of chatmail-deploy, or set www_folder"
            ),
        },
        Some(crate::www::Source::Folder(folder)) => folder,
        None => bail!(
            "web pages are disabled (www_folder = {})",
            config.www_folder
        ),
    };
    build_into(&config, &source, &args.out)?;
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    println!(
        "serving http://127.0.0.1:{}/ from {}, rebuilding when {} changes",
        args.port,
        args.out.display(),
        source.display()
    );
    let out = args.out.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let out = out.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &out);
            });
        }
    });
    let mut seen = newest_change(&source);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = newest_change(&source);
        if now != seen {
            seen = now;
            // a broken edit keeps the last good pages online
            match build_into(&config, &source, &args.out) {
                Ok(()) => println!("rebuilt"),
                Err(e) => eprintln!("build failed, serving the last good pages: {e:#}"),
            }
        }
    }
}

fn build_into(config: &chatmaild::config::Config, source: &Path, out: &Path) -> anyhow::Result<()> {
    let files = crate::www::build(config, &crate::www::Source::Folder(source.to_path_buf()))?;
    for (path, bytes) in files {
        let dest = out.join(&path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = dest.with_extension("webdev-tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &dest)?;
    }
    Ok(())
}

/// (newest mtime, number of files) below `dir`: changes when a file is edited, added or removed.
fn newest_change(dir: &Path) -> (Option<SystemTime>, usize) {
    let mut newest = None;
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("build") {
                    stack.push(path);
                }
                continue;
            }
            count += 1;
            let mtime = entry.metadata().and_then(|m| m.modified()).ok();
            newest = newest.max(mtime);
        }
    }
    (newest, count)
}

fn answer(stream: TcpStream, out: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // read the headers too: closing with unread input makes the kernel send a reset, which
    // a browser may report as a failed load
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let mut stream = reader.into_inner();
    // nothing outside the build folder
    if path.split('/').any(|p| p == ".." || p.starts_with('.')) {
        return stream.write_all(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    }
    match std::fs::read(out.join(path)) {
        Ok(body) => {
            let head = format!(
                "HTTP/1.0 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\r\n",
                content_type(path),
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)
        }
        Err(_) => stream.write_all(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

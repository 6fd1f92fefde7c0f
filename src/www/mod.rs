//! The relay's web pages: which folder to publish (`www_folder`) and building its files.
//!
//! A buildable folder has `src/index.md`: every `*.md` in `src/` becomes `<stem>.html`
//! inside `src/page-layout.html`, rendered with minijinja; other files are served as they
//! are, plus the invite QR code. A folder without `src/index.md` is served unchanged.
//!
//! An empty `www_folder` (the default) means the pages this program was built with: this
//! repository's `www/src`, compiled in, so a downloaded chatmail-deploy deploys them too.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! # let config = chatmaild::config::Config::load("chatmail.ini")?;
//! let ini_dir = std::path::Path::new(".");
//! if let Some(source) = chatmail_deploy::www::source(&config, ini_dir) {
//!     for (path, bytes) in chatmail_deploy::www::build(&config, &source)? {
//!         // write to /var/www/html/<path>, owned by www-data; leave other files there alone
//!         # let _ = (path, bytes);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod markdown;
mod qr;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chatmaild::config::Config;
use minijinja::{Environment, UndefinedBehavior, Value, syntax::SyntaxConfig};

const LAYOUT: &str = "page-layout.html";

/// Re-rendering stops when the page no longer changes; a template that keeps producing
/// new tags would loop forever, so give up after this many passes.
const MAX_PASSES: usize = 10;

/// The page sources compiled in (build.rs): every file of this repository's `www/src`, by name.
static BUILTIN: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/builtin_pages.rs"));

/// Where the pages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `www_folder` is empty: the pages compiled into this program.
    Builtin,
    /// A folder on this machine.
    Folder(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("the built-in pages"),
            Source::Folder(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Where to take the pages from, or `None` when the website is disabled.
///
/// Empty `www_folder` means the built-in pages (not a path on the build machine: the
/// program may run anywhere). A relative path is taken from the working directory (as
/// upstream does) and, failing that, from the ini file's directory, which is where the CLI
/// is usually started anyway. A path that is not a directory (conventionally `disabled`)
/// turns the website off.
pub fn source(config: &Config, ini_dir: &Path) -> Option<Source> {
    let folder = config.www_folder.trim();
    if folder.is_empty() {
        return Some(Source::Builtin);
    }
    folder_named(folder, ini_dir).map(Source::Folder)
}

/// The directory `folder` names, as [`source`] finds it.
pub fn folder_named(folder: &str, ini_dir: &Path) -> Option<PathBuf> {
    let path = Path::new(folder);
    if path.is_absolute() {
        return path.is_dir().then(|| path.to_path_buf());
    }
    let from_cwd = std::env::current_dir().ok().map(|cwd| cwd.join(path));
    from_cwd
        .into_iter()
        .chain([ini_dir.join(path)])
        .find(|candidate| candidate.is_dir())
}

/// Every file to serve from `source` (as returned by [`source`]), as
/// (path relative to the web root with `/` separators, contents), sorted by path.
///
/// Fails on unresolved git conflict markers in the page sources or on template errors;
/// the deploy should then warn and leave the served website alone.
pub fn build(config: &Config, source: &Source) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = match source {
        Source::Builtin => {
            let sources = BUILTIN
                .iter()
                .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
                .collect();
            build_site(config, sources, Path::new("built-in www/src"))?
        }
        Source::Folder(folder) => {
            let src = folder.join("src");
            if src.join("index.md").is_file() {
                build_site(config, read_flat(&src)?, &src)?
            } else {
                copy_tree(folder)?
            }
        }
    };
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// `sources`: the files of a `src/` folder by name (`src` names it in errors).
fn build_site(
    config: &Config,
    sources: Vec<(String, Vec<u8>)>,
    src: &Path,
) -> Result<Vec<(String, Vec<u8>)>> {
    let text = |name: &str, bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .with_context(|| format!("{} is not UTF-8", src.join(name).display()))
    };
    if let Some(name) = find_merge_conflict(&sources) {
        bail!("unresolved git conflict in {}", src.join(name).display());
    }
    let layout = sources
        .iter()
        .find(|(name, _)| name == LAYOUT)
        .with_context(|| format!("reading {}: not found", src.join(LAYOUT).display()))?;
    let renderer = Renderer::new(config, text(LAYOUT, &layout.1)?);
    let mut files = vec![(
        qr::file_name(&config.mail_domain),
        qr::invite_png(&config.mail_domain)?,
    )];
    for (name, bytes) in sources {
        if name == LAYOUT {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".md") {
            let html = renderer.page(stem, &text(&name, &bytes)?)?;
            files.push((format!("{stem}.html"), html.into_bytes()));
        } else {
            files.push((name, bytes));
        }
    }
    Ok(files)
}

/// The regular files directly in `dir`, by name, sorted.
fn read_flat(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    sorted_files(dir)?
        .into_iter()
        .map(|path| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok((file_name(&path)?, bytes))
        })
        .collect()
}

/// Renders Markdown pages into the layout.
struct Renderer {
    env: Environment<'static>,
    layout: String,
    config: Value,
    username_min_length: &'static str,
    username_max_length: &'static str,
    password_min_length: &'static str,
}

impl Renderer {
    fn new(config: &Config, layout: String) -> Self {
        Renderer {
            env: environment(),
            layout,
            config: config_value(config),
            username_min_length: number_word(config.username_min_length),
            username_max_length: number_word(config.username_max_length),
            password_min_length: number_word(config.password_min_length),
        }
    }

    /// The HTML page for `<stem>.md`: the layout is rendered again and again, because the
    /// first pass only inserts the page's HTML, whose own tags are evaluated by the next.
    fn page(&self, stem: &str, markdown_text: &str) -> Result<String> {
        let pagename = if stem == "index" { "home" } else { stem };
        let ctx = minijinja::context! {
            config => self.config.clone(),
            pagename,
            markdown_html => markdown::to_html(markdown_text),
            username_min_length => self.username_min_length,
            username_max_length => self.username_max_length,
            password_min_length => self.password_min_length,
        };
        let mut content = self.layout.clone();
        for _ in 0..MAX_PASSES {
            let rendered = self
                .env
                .render_str(&content, &ctx)
                .with_context(|| format!("rendering {stem}.md"))?;
            if rendered == content {
                return Ok(content);
            }
            content = rendered;
        }
        bail!("rendering {stem}.md: still changing after {MAX_PASSES} passes")
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // printing an unknown variable is a typo worth failing for, but `{% if x %}` on an
    // optional value must work
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // the page sources are trusted HTML, and values such as the postal address are
    // meant to be inserted as written
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_syntax(
        SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env
}

/// The `config` object of the templates: the ini keys plus a few derived values.
fn config_value(c: &Config) -> Value {
    minijinja::context! {
        mail_domain => c.mail_domain.clone(),
        mail_domain_bare => c.mail_domain_bare.clone(),
        ipv4_relay => c.ipv4_relay.map(|ip| ip.to_string()),
        postfix_myhostname => c.postfix_myhostname.clone(),
        max_user_send_per_minute => c.max_user_send_per_minute,
        max_user_send_burst_size => c.max_user_send_burst_size,
        max_mailbox_size => c.max_mailbox_size.clone(),
        max_mailbox_size_mb => c.max_mailbox_size_mb,
        max_message_size => c.max_message_size,
        delete_mails_after => c.delete_mails_after,
        delete_large_after => c.delete_large_after,
        delete_inactive_users_after => c.delete_inactive_users_after,
        username_min_length => c.username_min_length,
        username_max_length => c.username_max_length,
        password_min_length => c.password_min_length,
        www_folder => c.www_folder.clone(),
        disable_ipv6 => c.disable_ipv6,
        acme_email => c.acme_email.clone(),
        iroh_relay => c.iroh_relay.clone(),
        enable_iroh_relay => c.enable_iroh_relay,
        privacy_postal => c.privacy_postal.clone(),
        privacy_mail => c.privacy_mail.clone(),
        privacy_pdo => c.privacy_pdo.clone(),
        privacy_supervisor => c.privacy_supervisor.clone(),
        tls_cert_mode => c.tls_cert_mode.as_str(),
        // upstream's live-reload preview; deployed pages never reload themselves
        webdev => false,
    }
}

/// Lengths as prose: words up to twelve, digits up to fifty, and "more" beyond.
fn number_word(n: usize) -> &'static str {
    const WORDS: [&str; 51] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24",
        "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37", "38", "39",
        "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50",
    ];
    WORDS.get(n).copied().unwrap_or("more")
}

/// The first `*.css`, `*.html` or `*.md` of `sources` with a git conflict block.
fn find_merge_conflict(sources: &[(String, Vec<u8>)]) -> Option<&str> {
    sources
        .iter()
        .filter(|(name, _)| [".css", ".html", ".md"].iter().any(|e| name.ends_with(e)))
        .find(|(_, bytes)| has_conflict_block(&String::from_utf8_lossy(bytes)))
        .map(|(name, _)| name.as_str())
}

/// `<<<<<<<`, then `=======`, then `>>>>>>>`, each at the start of a line, in this order.
fn has_conflict_block(text: &str) -> bool {
    let mut wanted = ["<<<<<<<", "=======", ">>>>>>>"].into_iter().peekable();
    for line in text.lines() {
        if wanted.peek().is_some_and(|marker| line.starts_with(marker)) {
            wanted.next();
        }
    }
    wanted.peek().is_none()
}

/// Regular files directly in `dir`, by name.
fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every file below `root`, for folders that are served without a build.
fn copy_tree(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                let relative = path.strip_prefix(root)?;
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                files.push((name, bytes));
            }
        }
    }
    Ok(files)
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("file name of {} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests;

//! The relay's web pages as a browser shows them: built like `run` deploys them, served on
//! 127.0.0.1, opened in Debian's headless Chromium. Screenshots of every page land in
//! `<target>/pages-screenshots/`; the invite QR code is read back from the home page's
//! screenshot; every link and asset of the rendered pages is checked.
//!
//! Needs /usr/bin/chromium; skipped without it unless CHATMAIL_BROWSER_TESTS=1.

mod chromium;
mod image;
mod links;
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chatmaild::config::Config;
use chatmaild::newemail::{Credentials, dclogin_url, response_json};
use chromium::Chromium;
use links::Target;
use server::Server;

/// Privacy contacts filled in, so the pages show their configured variants.
const CONTACTS: &str = "privacy_mail = privacy@example.org
privacy_postal = Example Relay e.V., Hauptstr. 1, 12345 Berlin
privacy_pdo = Dana Protect, dpo@example.org
privacy_supervisor = the Berlin data-protection commissioner
";

#[test]
fn acme_relay_pages() {
    check_relay("chat.example.org");
}

/// Self-signed relays hand out `dclogin:` links, fetched from `/new` and drawn by a script.
#[test]
fn self_signed_relay_pages() {
    check_relay("_chat.example.org");
}

/// Relays known by IP address only: the `dclogin:` link also names the IMAP and SMTP host.
#[test]
fn ipv4_relay_pages() {
    check_relay("203.0.113.5");
}

fn check_relay(domain: &str) {
    let started = Instant::now();
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pages-{domain}"));
    let Some(browser) = Chromium::find(&scratch) else {
        return;
    };
    let config = Config::parse(
        &format!("[params]\nmail_domain = {domain}\n{CONTACTS}"),
        scratch.join("chatmail.ini"),
    )
    .unwrap();
    // the same folder and build `run` and `webdev` use
    let source =
        chatmail_deploy::www::source(&config, &scratch).expect("the pages are not disabled");
    let files = chatmail_deploy::www::build(&config, &source).unwrap();
    let pages: Vec<String> = files
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| path.ends_with(".html"))
        .collect();
    assert!(
        ["index.html", "info.html", "privacy.html"]
            .iter()
            .all(|p| pages.iter().any(|q| q == p)),
        "{pages:?}"
    );

    let (new_json, account_link) = if config.is_self_signed() {
        // fixed credentials with characters that need escaping, so the link is known
        let creds = Credentials {
            email: format!("pagetest1@{}", config.mail_domain),
            password: "p4ss w0rd&?#+".into(),
        };
        (
            Some(response_json(&config, &creds)),
            dclogin_url(&config, &creds),
        )
    } else {
        (None, format!("DCACCOUNT:https://{domain}/new"))
    };
    let server = Server::start(files, new_json);

    let mut problems = Vec::new();
    let mut doms = BTreeMap::new();
    for page in &pages {
        let url = server.url(&format!("/{page}"));
        let png = screenshot_path(domain, page);
        let dom = browser.render(&url, &png);
        let shot = image::Screenshot::load(&png);
        problems.extend(check_screenshot(&png, &shot));
        if page == "index.html" {
            let codes = shot.qr_codes();
            println!("{domain}: QR code in the rendered home page: {codes:?}");
            if codes != [account_link.clone()] {
                problems.push(format!(
                    "{}: QR codes {codes:?}, expected [{account_link:?}]",
                    png.display()
                ));
            }
        }
        doms.insert(format!("/{page}"), dom);
    }

    // every load the browser attempted, assets and `/new` included
    let loads = server.take_log();
    println!(
        "{domain}: the browser made {} requests: {:?}",
        loads.len(),
        loads.iter().map(|(p, _)| p).collect::<BTreeSet<_>>()
    );
    for (path, status) in &loads {
        if *status != 200 {
            problems.push(format!("browser load of {path}: HTTP {status}"));
        }
    }

    problems.extend(check_links(&server, &doms, &account_link, domain));
    println!("{domain}: checked in {:.1?}", started.elapsed());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn screenshot_path(domain: &str, page: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("pages-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = page.strip_suffix(".html").unwrap_or(page);
    dir.join(format!("{domain}-{stem}.png"))
}

/// Problems with a page's screenshot: wrong size, or (nearly) nothing drawn.
fn check_screenshot(png: &Path, shot: &image::Screenshot) -> Vec<String> {
    let (colours, ink) = (shot.distinct_colours(), shot.ink());
    println!(
        "screenshot {}: {}x{}, {} bytes, {colours} colours, {:.1}% drawn",
        png.display(),
        shot.width,
        shot.height,
        std::fs::metadata(png).map(|m| m.len()).unwrap_or(0),
        ink * 100.0
    );
    let mut problems = Vec::new();
    if (shot.width, shot.height) != (chromium::WIDTH as usize, chromium::HEIGHT as usize) {
        problems.push(format!(
            "{}: {}x{}, expected {}x{}",
            png.display(),
            shot.width,
            shot.height,
            chromium::WIDTH,
            chromium::HEIGHT
        ));
    }
    // text alone, anti-aliased, gives dozens of colours and a few percent of the pixels
    if colours < 16 || ink < 0.01 {
        problems.push(format!(
            "{}: looks blank ({colours} colours, {:.2}% drawn)",
            png.display(),
            ink * 100.0
        ));
    }
    problems
}

/// Checks every reference in the rendered pages (`doms`, by path) and in the stylesheets
/// they use: local ones must load with HTTP 200 (and their `#fragment` exist), external
/// ones must be well-formed https links (never fetched), app links must be the invite.
fn check_links(
    server: &Server,
    doms: &BTreeMap<String, String>,
    account_link: &str,
    domain: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut external = BTreeSet::new();
    let mut app = BTreeSet::new();
    let mut pending: Vec<(String, links::Ref)> = doms
        .iter()
        .flat_map(|(page, dom)| {
            links::refs_in_html(dom)
                .into_iter()
                .map(move |r| (page.clone(), r))
        })
        .collect();
    let mut local: BTreeMap<String, u16> = BTreeMap::new();
    let mut references = 0;
    while let Some((from, r)) = pending.pop() {
        references += 1;
        let here = format!("{from}: <{}> {:?}", r.tag, r.value);
        match links::resolve(&from, &r.value) {
            Err(e) => problems.push(format!("{here}: {e}")),
            Ok(Target::External(url)) if r.is_asset() => {
                problems.push(format!(
                    "{here}: asset from another site ({url}); pages must load only their own files"
                ));
            }
            Ok(Target::External(url)) => {
                external.insert(url);
            }
            Ok(Target::App(url)) => {
                let invite = !url.to_ascii_lowercase().starts_with("mailto:");
                if invite && url != account_link {
                    problems.push(format!("{here}: expected the invite {account_link:?}"));
                }
                app.insert(url);
            }
            Ok(Target::Local { path, fragment }) => {
                if !local.contains_key(&path) {
                    let (status, body) = server.get(&path);
                    local.insert(path.clone(), status);
                    if status == 200 && path.ends_with(".css") {
                        let css = String::from_utf8_lossy(&body);
                        pending.extend(
                            links::refs_in_css(&css)
                                .into_iter()
                                .map(|r| (path.clone(), r)),
                        );
                    }
                }
                if local[&path] != 200 {
                    problems.push(format!("{here}: {path} answers HTTP {}", local[&path]));
                }
                if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
                    let found = doms
                        .get(&path)
                        .is_some_and(|dom| links::anchors(dom).contains(&fragment));
                    if !found {
                        problems.push(format!("{here}: no anchor #{fragment} in {path}"));
                    }
                }
            }
        }
    }
    if !app.contains(account_link) {
        problems.push(format!(
            "no link to the invite {account_link:?} on any page"
        ));
    }
    println!(
        "{domain}: {references} references; {} local targets, all fetched: {:?}",
        local.len(),
        local
    );
    println!(
        "{domain}: {} external links, checked for form only (not fetched): {external:?}",
        external.len()
    );
    println!("{domain}: app links: {app:?}");
    problems
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn config(ini_params: &str) -> Config {
    Config::parse(&format!("[params]\n{ini_params}"), "/tmp/chatmail.ini").unwrap()
}

fn self_signed() -> Config {
    config("mail_domain = _test\n")
}

fn domain() -> Config {
    config(
        "mail_domain = chat.example.org\n\
         max_user_send_per_minute = 42\n\
         delete_mails_after = 17\n\
         delete_inactive_users_after = 123\n\
         privacy_mail = privacy@example.org\n\
         privacy_postal = Example Ltd\n  Some Street 1\n  12345 Town\n\
         privacy_pdo = Pat Officer\n\
         privacy_supervisor = Data Protection Authority of Somewhere\n",
    )
}

fn repo_www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

fn built(config: &Config) -> BTreeMap<String, Vec<u8>> {
    build(config, &Source::Builtin)
        .unwrap()
        .into_iter()
        .collect()
}

fn text(files: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(files[name].clone()).unwrap()
}

/// A fresh empty directory under the system's temp dir, removed by the caller.
fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("www-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the repository's `www/src` inside a fresh folder, to be modified by a test.
fn copied_site(tag: &str) -> PathBuf {
    let root = temp_dir(tag);
    std::fs::create_dir(root.join("src")).unwrap();
    for path in sorted_files(&repo_www().join("src")).unwrap() {
        std::fs::copy(&path, root.join("src").join(path.file_name().unwrap())).unwrap();
    }
    root
}

const PAGES: [&str; 3] = ["index.html", "info.html", "privacy.html"];

fn assert_no_template_syntax(files: &BTreeMap<String, Vec<u8>>) {
    for page in PAGES {
        let html = text(files, page);
        for leftover in ["{{", "}}", "{%", "%}", "{#", "#}", "QxJINJAxTAG"] {
            assert!(
                !html.contains(leftover),
                "{page} contains {leftover}:\n{html}"
            );
        }
    }
}

#[test]
fn file_set_of_the_default_site() {
    for (config, qr) in [
        (self_signed(), "qr-chatmail-invite-_test.png"),
        (domain(), "qr-chatmail-invite-chat.example.org.png"),
    ] {
        let names: Vec<String> = built(&config).into_keys().collect();
        let mut expected = vec![
            "dclogin.js",
            "index.html",
            "info.html",
            "logo.svg",
            "main.css",
            "privacy.html",
            qr,
            "qrcode-svg.min.js",
            "robots.txt",
        ];
        expected.sort();
        assert_eq!(names, expected);
    }
}

#[test]
fn pages_have_no_template_syntax_left() {
    assert_no_template_syntax(&built(&self_signed()));
    assert_no_template_syntax(&built(&domain()));
}

#[test]
fn layout_title_menu_and_domain() {
    let files = built(&domain());
    for (page, pagename) in [
        ("index.html", "home"),
        ("info.html", "info"),
        ("privacy.html", "privacy"),
    ] {
        let html = text(&files, page);
        assert!(html.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(
            html.contains(&format!("<title>chat.example.org {pagename}</title>")),
            "{page}"
        );
        assert!(html.contains(r#"<ul id="menu">"#), "{page}");
        assert!(html.contains(r#"<li id="domain"><a href="index.html">chat.example.org</a></li>"#));
        assert!(html.contains(r#"href="./main.css""#));
        assert!(html.contains(r#"<link rel="icon" href="/logo.svg""#));
        assert!(!html.contains("http-equiv=\"refresh\""), "no webdev reload");
    }
}

#[test]
fn domain_relay_home_offers_the_dcaccount_link_and_qr_image() {
    let html = text(&built(&domain()), "index.html");
    let link = r#"href="DCACCOUNT:https://chat.example.org/new""#;
    assert_eq!(
        html.matches(link).count(),
        2,
        "button and QR image link:\n{html}"
    );
    assert!(html.contains(r#"class="cta-button""#));
    assert!(html.contains(r#"src="qr-chatmail-invite-chat.example.org.png""#));
    assert!(html.contains(r#"width="300""#));
    assert!(!html.contains("dclogin"), "{html}");
    assert!(!html.contains("qrcode-svg.min.js"));
}

#[test]
fn self_signed_home_runs_the_dclogin_script() {
    let html = text(&built(&self_signed()), "index.html");
    assert!(
        html.contains(r##"<a class="cta-button" id="dclogin-link" href="#">"##),
        "{html}"
    );
    // a block wrapper, not a paragraph: a <div> inside <p> would be torn apart by browsers
    assert!(html.contains(
        r##"<div class="qr"><a id="qr-link" href="#"><div id="qr-code"></div></a></div>"##
    ));
    let svg_lib = html
        .find(r#"<script src="qrcode-svg.min.js"></script>"#)
        .unwrap();
    let dclogin = html.find(r#"<script src="dclogin.js"></script>"#).unwrap();
    assert!(svg_lib < dclogin, "the QR library loads first");
    assert!(!html.contains("DCACCOUNT"), "{html}");
}

#[test]
fn dclogin_script_fetches_new_and_fills_the_elements() {
    let js = text(&built(&self_signed()), "dclogin.js");
    for needle in [
        "fetch(\"/new\"",
        "dclogin_url",
        "\"dclogin-link\"",
        "\"qr-link\"",
        "\"qr-code\"",
        "new QRCode(",
        ".svg()",
    ] {
        assert!(js.contains(needle), "dclogin.js lacks {needle}");
    }
}

#[test]
fn vendored_qr_library_is_qrcode_svg_1_1_0() {
    let js = text(&built(&self_signed()), "qrcode-svg.min.js");
    assert!(
        js.starts_with("/*! qrcode-svg v1.1.0 |"),
        "license header kept"
    );
    assert!(js.contains("MIT license"));
    let license =
        std::fs::read_to_string(repo_www().join("LICENSES/qrcode-svg-1.1.0.txt")).unwrap();
    assert!(license.contains("The MIT License (MIT)"));
}

#[test]
fn info_page_shows_limits_and_deletion() {
    let html = text(&built(&domain()), "info.html");
    for needle in [
        "up to 42 messages per minute",
        "up to 500M of messages",
        "17 days after it",
        "123 days",
        "privacy@example.org",
        r#"<a name="account-deletion"></a>"#,
    ] {
        assert!(html.contains(needle), "info lacks {needle:?}:\n{html}");
    }
}

#[test]
fn privacy_page_shows_the_contacts() {
    let html = text(&built(&domain()), "privacy.html");
    for needle in [
        "<h1>Privacy policy of chat.example.org</h1>",
        "<pre>\nExample Ltd\nSome Street 1\n12345 Town\n</pre>",
        "E-mail: privacy@example.org",
        "<pre>\nPat Officer\n</pre>",
        "Data Protection Authority of Somewhere",
        "every message 17 days",
    ] {
        assert!(html.contains(needle), "privacy lacks {needle:?}:\n{html}");
    }
}

#[test]
fn missing_privacy_contacts_read_as_not_configured() {
    let html = text(&built(&self_signed()), "privacy.html");
    assert!(html.contains("(postal address not configured)"), "{html}");
    assert!(
        !html.contains("none"),
        "an unset value must not print as 'none'"
    );
}

#[test]
fn home_page_of_the_default_public_relay_has_its_own_greeting() {
    let nine = text(
        &built(&config("mail_domain = nine.testrun.org\n")),
        "index.html",
    );
    let other = text(&built(&domain()), "index.html");
    assert!(nine.contains("Delta Chat</a> suggests"), "{nine}");
    assert!(!other.contains("Delta Chat</a> suggests"));
}

#[test]
fn length_words_fill_the_home_page() {
    let ranged = config(
        "mail_domain = chat.example.org\nusername_min_length = 3\n\
         username_max_length = 20\npassword_min_length = 60\n",
    );
    let html = text(&built(&ranged), "index.html");
    assert!(
        html.contains("user names of\nthree to 20\ncharacters"),
        "{html}"
    );
    assert!(html.contains("at least more characters"), "{html}");

    let fixed = text(&built(&domain()), "index.html");
    assert!(fixed.contains("user names of\nnine\ncharacters"), "{fixed}");
    assert!(fixed.contains("at least nine characters"), "{fixed}");
}

#[test]
fn number_words() {
    assert_eq!(number_word(0), "zero");
    assert_eq!(number_word(9), "nine");
    assert_eq!(number_word(12), "twelve");
    assert_eq!(number_word(13), "13");
    assert_eq!(number_word(50), "50");
    assert_eq!(number_word(51), "more");
}

#[test]
fn qr_png_in_the_build_scans_to_the_invite_link() {
    let files = built(&domain());
    let png_bytes = &files["qr-chatmail-invite-chat.example.org.png"];
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        (1_000..200_000).contains(&png_bytes.len()),
        "{} bytes",
        png_bytes.len()
    );
    assert_eq!(
        qr::tests::scan(png_bytes),
        "DCACCOUNT:https://chat.example.org/new"
    );
}

#[test]
fn ipv4_relay_is_self_signed_with_a_bracketed_domain() {
    let files = built(&config("mail_domain = 192.0.2.10\n"));
    assert!(files.contains_key("qr-chatmail-invite-[192.0.2.10].png"));
    let html = text(&files, "index.html");
    assert!(html.contains("<title>[192.0.2.10] home</title>"), "{html}");
    assert!(html.contains(r#"id="dclogin-link""#), "{html}");
    assert!(!html.contains("DCACCOUNT"));
    assert_no_template_syntax(&files);
}

#[test]
fn tags_in_markdown_are_evaluated_repeatedly() {
    let root = copied_site("nested");
    std::fs::write(
        root.join("src/extra.md"),
        "# {{ config.mail_domain }}\n\n{% if config.tls_cert_mode == \"acme\" %}\nacme & co\n{% endif %}\n",
    )
    .unwrap();
    let files: BTreeMap<_, _> = build(&domain(), &Source::Folder(root.clone()))
        .unwrap()
        .into_iter()
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    let html = text(&files, "extra.html");
    assert!(html.contains("<title>chat.example.org extra</title>"));
    assert!(html.contains("<h1>chat.example.org</h1>"), "{html}");
    assert!(html.contains("acme &amp; co"), "{html}");
}

#[test]
fn unknown_variable_is_an_error() {
    let root = copied_site("typo");
    std::fs::write(root.join("src/info.md"), "{{ config.no_such_key }}\n").unwrap();
    let err = build(&domain(), &Source::Folder(root.clone())).unwrap_err();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(format!("{err:#}").contains("info.md"), "{err:#}");
}

#[test]
fn template_that_never_settles_is_an_error() {
    let mut renderer = Renderer::new(&domain(), "{{ markdown_html }}".to_string());
    // every pass prints the call again, plus one more character
    renderer
        .env
        .add_function("again", || "{{ again() }}+".to_string());
    let err = renderer.page("info", "{{ again() }}").unwrap_err();
    assert!(err.to_string().contains("still changing"), "{err:#}");
}

#[test]
fn conflict_markers_fail_the_build() {
    let root = copied_site("conflict");
    let page = root.join("src/info.md");
    let mut text = std::fs::read_to_string(&page).unwrap();
    text.push_str("<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> branch\n");
    std::fs::write(&page, text).unwrap();
    let err = build(&domain(), &Source::Folder(root.clone())).unwrap_err();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(err.to_string().contains("conflict"), "{err}");
}

#[test]
fn conflict_block_needs_all_three_markers_in_order() {
    assert!(has_conflict_block(
        "a\n<<<<<<< x\nb\n=======\nc\n>>>>>>> y\n"
    ));
    assert!(!has_conflict_block("=======\n<<<<<<< x\n>>>>>>> y\n"));
    assert!(!has_conflict_block("<<<<<<< x\n>>>>>>> y\n"));
    assert!(!has_conflict_block(" <<<<<<< x\n=======\n>>>>>>> y\n"));
}

#[test]
fn folder_without_sources_is_served_unchanged() {
    let root = temp_dir("plain");
    std::fs::create_dir_all(root.join("img")).unwrap();
    std::fs::write(root.join("index.html"), "{{ not rendered }}").unwrap();
    std::fs::write(root.join("img/a.png"), b"\x89PNG").unwrap();
    let files = build(&domain(), &Source::Folder(root.clone())).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        files,
        vec![
            ("img/a.png".to_string(), b"\x89PNG".to_vec()),
            ("index.html".to_string(), b"{{ not rendered }}".to_vec()),
        ]
    );
}

/// The compiled-in pages are this repository's www/src: building either gives the same site.
#[test]
fn the_built_in_pages_are_the_repositorys() {
    let config = domain();
    let from_folder = build(&config, &Source::Folder(repo_www())).unwrap();
    let builtin = build(&config, &Source::Builtin).unwrap();
    assert!(builtin.iter().any(|(name, _)| name == "index.html"));
    assert_eq!(from_folder, builtin);
}

#[test]
fn source_follows_www_folder() {
    let ini_dir = temp_dir("ini");
    std::fs::create_dir(ini_dir.join("site")).unwrap();
    let with = |folder: &str| config(&format!("mail_domain = x.org\nwww_folder = {folder}\n"));

    assert_eq!(
        source(&config("mail_domain = x.org\n"), &ini_dir),
        Some(Source::Builtin)
    );
    assert_eq!(source(&with("disabled"), &ini_dir), None);
    let absolute = ini_dir.join("site");
    assert_eq!(
        source(&with(absolute.to_str().unwrap()), &ini_dir),
        Some(Source::Folder(absolute.clone()))
    );
    // not below the working directory (the crate root in tests), but below the ini's
    assert_eq!(
        source(&with("site"), &ini_dir),
        Some(Source::Folder(absolute))
    );
    // below the working directory
    assert_eq!(
        source(&with("www"), &ini_dir),
        Some(Source::Folder(std::env::current_dir().unwrap().join("www")))
    );
    std::fs::write(ini_dir.join("file"), "").unwrap();
    assert_eq!(
        source(&with("file"), &ini_dir),
        None,
        "a file is not a website"
    );
    std::fs::remove_dir_all(&ini_dir).unwrap();
}

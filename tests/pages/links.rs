//! The links and assets a page refers to, taken from the DOM Chromium serialised, and
//! what each one points at.
//!
//! Chromium writes every attribute as `name="value"` with `&`, `"`, `<`, `>` escaped, so a
//! small scanner is enough; no general HTML parser is needed.

/// One reference found in a page or stylesheet.
#[derive(Debug, Clone)]
pub struct Ref {
    /// Element it was found on (`a`, `img`, `link`, …, or `css` for stylesheets).
    pub tag: String,
    pub value: String,
}

impl Ref {
    /// Loaded by the browser itself (image, script, stylesheet, icon), not followed by a click.
    pub fn is_asset(&self) -> bool {
        !matches!(self.tag.as_str(), "a" | "area")
    }
}

/// What a reference points at.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A path on this site (absolute, starting with `/`), maybe with a fragment.
    Local {
        path: String,
        fragment: Option<String>,
    },
    /// `https://…`, not fetched: tests send nothing beyond loopback.
    External(String),
    /// A hand-over to the chat app (`DCACCOUNT:`, `dclogin:`) or a mail client.
    App(String),
}

const URL_ATTRIBUTES: [&str; 6] = ["href", "xlink:href", "src", "srcset", "action", "poster"];

/// Every URL-valued attribute of every element in `html`, plus `url(…)` in inline styles.
pub fn refs_in_html(html: &str) -> Vec<Ref> {
    let mut refs = Vec::new();
    for (tag, attrs) in elements(html) {
        for (name, value) in &attrs {
            if name == "srcset" {
                for candidate in value.split(',') {
                    if let Some(url) = candidate.split_whitespace().next() {
                        refs.push(Ref {
                            tag: tag.clone(),
                            value: url.to_string(),
                        });
                    }
                }
            } else if URL_ATTRIBUTES.contains(&name.as_str()) {
                refs.push(Ref {
                    tag: tag.clone(),
                    value: value.clone(),
                });
            } else if name == "style" {
                refs.extend(refs_in_css(value));
            }
        }
    }
    refs
}

/// The `id`s and `name`s of anchors in `html`: what a `#fragment` may point at.
pub fn anchors(html: &str) -> Vec<String> {
    elements(html)
        .into_iter()
        .flat_map(|(tag, attrs)| {
            attrs.into_iter().filter_map(move |(name, value)| {
                (name == "id" || (name == "name" && tag == "a")).then_some(value)
            })
        })
        .collect()
}

/// `url(…)` and `@import "…"` references in a stylesheet.
pub fn refs_in_css(css: &str) -> Vec<Ref> {
    let mut refs = Vec::new();
    let mut rest = css;
    while let Some(i) = rest.find("url(") {
        rest = &rest[i + 4..];
        let end = rest.find(')').unwrap_or(rest.len());
        let url = rest[..end].trim().trim_matches(['"', '\'']);
        if !url.starts_with("data:") {
            refs.push(css_ref(url));
        }
        rest = &rest[end..];
    }
    for line in css.split(';') {
        if let Some(import) = line.trim().strip_prefix("@import") {
            let import = import.trim();
            if import.starts_with('"') || import.starts_with('\'') {
                refs.push(css_ref(import.trim_matches(['"', '\''])));
            }
        }
    }
    refs
}

fn css_ref(url: &str) -> Ref {
    Ref {
        tag: "css".into(),
        value: url.to_string(),
    }
}

/// Where `value`, found in the document at `base` (a path such as `/index.html`), points.
pub fn resolve(base: &str, value: &str) -> Result<Target, String> {
    if value.is_empty() {
        return Err("empty URL".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("whitespace in URL".into());
    }
    if value == "#" {
        return Err("`#` leads nowhere (a script was to replace it?)".into());
    }
    if value.starts_with("//") {
        return Err("scheme-relative URL; write https://".into());
    }
    if let Some((scheme, rest)) = scheme_of(value) {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" => check_https(rest).map(|()| Target::External(value.to_string())),
            "http" => Err("plain http:// link; use https://".into()),
            "dcaccount" | "dclogin" => Ok(Target::App(value.to_string())),
            "mailto" if rest.contains('@') => Ok(Target::App(value.to_string())),
            other => Err(format!("unexpected scheme {other}:")),
        };
    }
    let (rest, fragment) = match value.split_once('#') {
        Some((r, f)) => (r, Some(f.to_string())),
        None => (value, None),
    };
    let rest = rest.split('?').next().unwrap_or("");
    let path = if rest.is_empty() {
        base.to_string()
    } else if rest.starts_with('/') {
        normalise(rest)?
    } else {
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        normalise(&format!("{dir}{rest}"))?
    };
    Ok(Target::Local { path, fragment })
}

/// `scheme` and the rest, if `value` starts with `scheme:` (RFC 3986 scheme characters).
fn scheme_of(value: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    valid.then_some((scheme, rest))
}

/// A well-formed `https:` URL: `//host[:port]` with a dotted DNS name, then a path.
fn check_https(rest: &str) -> Result<(), String> {
    let after = rest
        .strip_prefix("//")
        .ok_or("https: without //host".to_string())?;
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let labels_ok = host.split('.').count() >= 2
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return Err(format!("bad host {host:?}"));
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("bad port in {authority:?}"));
    }
    Ok(())
}

/// Removes `.` and `..` segments; a path climbing above the web root is an error.
fn normalise(path: &str) -> Result<String, String> {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop().ok_or("climbs above the web root")?;
            }
            "" if i + 1 < segments.len() => {}
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// (tag name, attributes) of every start tag, attribute values unescaped; the contents of
/// `script` and `style` elements are skipped, they are not markup.
fn elements(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with("!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let tag = rest[..name_end].to_ascii_lowercase();
        if tag.is_empty() || !tag.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let (attrs, after) = attributes(&rest[name_end..]);
        rest = after;
        if tag == "script" || tag == "style" {
            let close = format!("</{tag}");
            rest = rest.find(&close).map_or("", |e| &rest[e..]);
        }
        found.push((tag, attrs));
    }
    found
}

/// Attributes up to the end of the start tag, and the text after it.
fn attributes(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if s.is_empty() {
            return (attrs, s);
        }
        if let Some(after) = s.strip_prefix('>') {
            return (attrs, after);
        }
        let name_end = s
            .find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '/')
            .unwrap_or(s.len())
            .max(1);
        let name = s[..name_end].to_ascii_lowercase();
        s = s[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after_eq) = s.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let (raw, after) = match after_eq.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after_eq[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after_eq
                        .find(|c: char| c.is_whitespace() || c == '>')
                        .unwrap_or(after_eq.len());
                    (&after_eq[..end], &after_eq[end..])
                }
            };
            value = unescape(raw);
            s = after;
        }
        attrs.push((name, value));
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[test]
fn resolves_relative_absolute_and_foreign_references() {
    let local = |path: &str, fragment: Option<&str>| Target::Local {
        path: path.into(),
        fragment: fragment.map(str::to_string),
    };
    assert_eq!(
        resolve("/index.html", "./main.css"),
        Ok(local("/main.css", None))
    );
    assert_eq!(
        resolve("/index.html", "/logo.svg"),
        Ok(local("/logo.svg", None))
    );
    assert_eq!(
        resolve("/index.html", "info.html#account-deletion"),
        Ok(local("/info.html", Some("account-deletion")))
    );
    assert_eq!(resolve("/a/b.css", "../x.png"), Ok(local("/x.png", None)));
    assert!(resolve("/index.html", "../../x").is_err());
    assert!(resolve("/index.html", "#").is_err());
    assert!(resolve("/index.html", "http://example.org/").is_err());
    assert!(resolve("/index.html", "https://nodot/").is_err());
    assert!(resolve("/index.html", "javascript:void(0)").is_err());
    assert_eq!(
        resolve("/index.html", "https://delta.chat/en/help#howtoe2ee"),
        Ok(Target::External(
            "https://delta.chat/en/help#howtoe2ee".into()
        ))
    );
    assert!(matches!(
        resolve("/index.html", "DCACCOUNT:https://chat.example.org/new"),
        Ok(Target::App(_))
    ));
}

#[test]
fn scans_attributes_anchors_and_css() {
    let html = r#"<p><a href="a.html?x=1&amp;y=2">x</a><img src='q.png' alt="a > b"><a name="top"></a>
<script>if (a < b) { x = "<img src=nope>"; }</script><div id=box style="background: url(bg.png)"></div>"#;
    let refs: Vec<_> = refs_in_html(html)
        .into_iter()
        .map(|r| (r.tag, r.value))
        .collect();
    assert_eq!(
        refs,
        [
            ("a".to_string(), "a.html?x=1&y=2".to_string()),
            ("img".into(), "q.png".into()),
            ("css".into(), "bg.png".into()),
        ]
    );
    assert_eq!(anchors(html), ["top", "box"]);
    let css = "@import \"base.css\";\nbody { background: url( 'x.png' ) } i { src: url(data:abc) }";
    let refs: Vec<_> = refs_in_css(css).into_iter().map(|r| r.value).collect();
    assert_eq!(refs, ["x.png", "base.css"]);
}

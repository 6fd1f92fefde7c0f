//! Markdown to HTML for the page sources, keeping minijinja tags intact.
//!
//! The pages are converted first and rendered afterwards (the layout pulls the HTML in as
//! a variable and is re-rendered until stable), so tags must survive the conversion
//! verbatim: the Markdown renderer would otherwise HTML-escape `<`, `>` and `&` inside
//! them, or read `_` and `*` in them as emphasis.

use pulldown_cmark::{Options, Parser, html};

/// Every tag is swapped for an alphanumeric token that Markdown leaves alone; the
/// trailing `Q` keeps `…1Q` from matching inside `…12Q` when the tags are put back.
const TOKEN_PREFIX: &str = "QxJINJAxTAG";

/// Converts Markdown to HTML (CommonMark, no extensions: raw HTML passes through).
pub fn to_html(markdown: &str) -> String {
    let (protected, tags) = protect_tags(markdown);
    let mut out = String::with_capacity(protected.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(&protected, Options::empty()));
    restore_tags(&out, &tags)
}

fn token(index: usize) -> String {
    format!("{TOKEN_PREFIX}{index}Q")
}

/// Replaces `{{ … }}`, `{% … %}` and `{# … #}` with tokens; unclosed openers stay text.
fn protect_tags(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut tags = Vec::new();
    let mut rest = text;
    while let Some(start) = find_opener(rest) {
        let close = match &rest[start + 1..start + 2] {
            "{" => "}}",
            "%" => "%}",
            _ => "#}",
        };
        let Some(len) = rest[start + 2..].find(close) else {
            break;
        };
        let end = start + 2 + len + close.len();
        out.push_str(&rest[..start]);
        out.push_str(&token(tags.len()));
        tags.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, tags)
}

fn find_opener(text: &str) -> Option<usize> {
    ["{{", "{%", "{#"]
        .iter()
        .filter_map(|opener| text.find(opener))
        .min()
}

/// Puts the tags back; a block tag that ended up alone in a paragraph loses the `<p>`
/// wrapper so that a false `{% if %}` leaves no empty paragraphs behind.
fn restore_tags(html: &str, tags: &[String]) -> String {
    let mut out = html.to_string();
    for (i, tag) in tags.iter().enumerate() {
        let token = token(i);
        if tag.starts_with("{%") {
            out = out.replace(&format!("<p>{token}</p>"), tag);
        }
        out = out.replace(&token, tag);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_pass_through_unescaped() {
        let html = to_html(
            "Hello {{ a_b_c }} and *x*\n\n{% if x < 3 and y != \"q&r\" %}\nyes\n{% endif %}\n",
        );
        assert!(html.contains("Hello {{ a_b_c }} and <em>x</em>"), "{html}");
        assert!(html.contains("{% if x < 3 and y != \"q&r\" %}"), "{html}");
        assert!(!html.contains(TOKEN_PREFIX), "{html}");
    }

    #[test]
    fn lone_block_tags_lose_their_paragraph() {
        let html = to_html("{% if a %}\n\ntext\n\n{% endif %}\n");
        assert_eq!(html, "{% if a %}\n<p>text</p>\n{% endif %}\n");
    }

    #[test]
    fn tags_inside_links_and_raw_html() {
        let html = to_html(
            "[x](https://{{ d }}/new)\n\n<a href=\"DCACCOUNT:https://{{ d }}/new\">y</a>\n",
        );
        assert!(html.contains("href=\"https://{{ d }}/new\""), "{html}");
        assert!(
            html.contains("<a href=\"DCACCOUNT:https://{{ d }}/new\">y</a>"),
            "{html}"
        );
    }

    #[test]
    fn unclosed_openers_stay_text() {
        let html = to_html("a {{ b and {% c\n");
        assert_eq!(html, "<p>a {{ b and {% c</p>\n");
    }

    #[test]
    fn many_tags_keep_their_order() {
        let source: String = (0..15).map(|i| format!("{{{{ v{i} }}}} ")).collect();
        let html = to_html(&source);
        assert_eq!(html, format!("<p>{}</p>\n", source.trim_end()));
    }
}

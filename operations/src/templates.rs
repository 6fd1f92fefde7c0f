//! minijinja templates for config files: strict about undefined values, and keeping the
//! final newline that config files need.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, syntax::SyntaxConfig};
use serde::Serialize;

use crate::Error;

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                // block tags on lines of their own leave no blank lines in config files
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("default delimiters are valid"),
        );
        // config files are not HTML
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Templates { env }
    }

    /// Adds one template under `name`.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), Error> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| template_error(name, &e))
    }

    /// Adds every file below `dir`, named by its path relative to `dir`.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| Error::LocalFile {
                path: d.display().to_string(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let source = std::fs::read_to_string(&path).map_err(|source| Error::LocalFile {
                    path: path.display().to_string(),
                    source,
                })?;
                let name = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy();
                self.add(&name, &source)?;
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.env.templates().map(|(n, _)| n.to_string()).collect();
        names.sort();
        names
    }

    /// Renders `name` with `context`; an undefined variable is an error naming it.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<Vec<u8>, Error> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| template_error(name, &e))?;
        template
            .render(minijinja::value::Serde(&context))
            .map(String::into_bytes)
            .map_err(|e| template_error(name, &e))
    }
}

fn template_error(name: &str, e: &minijinja::Error) -> Error {
    let mut detail = e.to_string();
    if e.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(line) = e.line()
    {
        detail = format!("undefined value on line {line} (strict mode): {e}");
    }
    Error::Template {
        name: name.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_final_newline_and_does_not_escape() {
        let mut t = Templates::new();
        t.add("a.conf", "x = {{ v }}\n").unwrap();
        assert_eq!(
            t.render("a.conf", json!({"v": "<b>"})).unwrap(),
            b"x = <b>\n"
        );
    }

    #[test]
    fn block_tags_leave_no_blank_lines() {
        let mut t = Templates::new();
        t.add("b.conf", "a\n  {% if x %}\nb\n  {% endif %}\nc\n")
            .unwrap();
        assert_eq!(
            t.render("b.conf", json!({"x": true})).unwrap(),
            b"a\nb\nc\n"
        );
        assert_eq!(t.render("b.conf", json!({"x": false})).unwrap(), b"a\nc\n");
    }

    #[test]
    fn undefined_values_are_errors() {
        let mut t = Templates::new();
        t.add("a.conf", "line1\nx = {{ missing }}\n").unwrap();
        let err = t.render("a.conf", json!({})).unwrap_err().to_string();
        assert!(err.contains("a.conf"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        t.add("b.conf", "{% if nope %}x{% endif %}").unwrap();
        assert!(t.render("b.conf", json!({})).is_err());
    }

    #[test]
    fn syntax_errors_name_the_template() {
        let mut t = Templates::new();
        let err = t.add("bad.conf", "{% if %}").unwrap_err().to_string();
        assert!(err.starts_with("template bad.conf:"), "{err}");
    }
}

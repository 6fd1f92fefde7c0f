//! The config file templates, compiled into the binary (each component declares its own),
//! and the operator's replacements for them.

use std::path::Path;

use anyhow::{Context, bail};
use operations::Templates;

/// The built-in templates; a file `DIR/NAME` in `overrides` replaces template NAME (only
/// names that exist: a typo must not go unnoticed).
pub fn load(overrides: Option<&Path>) -> anyhow::Result<Templates> {
    let mut t = Templates::new();
    for template in super::components::every_template() {
        let (name, source) = (template.name, template.source);
        let own = overrides.map(|dir| dir.join(name)).filter(|p| p.is_file());
        match own {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                t.add(name, &text)?;
            }
            None => t.add(name, source)?,
        }
    }
    if let Some(dir) = overrides {
        for name in files_under(dir, dir)? {
            if !super::components::every_template().any(|t| t.name == name) {
                bail!("{}: no built-in template is called {name}", dir.display());
            }
        }
    }
    Ok(t)
}

/// Relative paths of the files under `dir`.
fn files_under(root: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(root, &path)?);
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_dir_replaces_templates_of_the_same_name_only() {
        let dir = tempfile_dir("tpl-override");
        std::fs::create_dir_all(dir.join("postfix")).unwrap();
        std::fs::write(dir.join("postfix/login_map"), "own {{ 1 + 1 }}\n").unwrap();
        let t = load(Some(&dir)).unwrap();
        assert_eq!(
            t.render("postfix/login_map", serde_json::json!({}))
                .unwrap(),
            b"own 2\n"
        );
        std::fs::write(dir.join("postfix/main.cf"), "typo: no .j2\n").unwrap();
        let Err(err) = load(Some(&dir)) else {
            panic!("an unknown template name was accepted")
        };
        let err = err.to_string();
        assert!(
            err.ends_with("no built-in template is called postfix/main.cf"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

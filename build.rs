//! Records the commit this binary was built from, for /etc/chatmail-version, and embeds the
//! relay binaries when CHATMAIL_EMBED_DIR names a directory with them: <dir>/<arch>/<name>
//! for arch x86_64 and aarch64 (any names: whatever files each arch directory holds), so
//! that one downloaded chatmail-deploy deploys hosts of both architectures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host architectures (`uname -m`) a relay binary set can be embedded for.
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CHATMAIL_DEPLOY_COMMIT={head}");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    component_files(&out, "src/relay/components", "with_component_files");
    component_files(
        &out,
        "src/relay/components/test_only",
        "with_test_component_files",
    );

    builtin_pages(&out);

    println!("cargo:rerun-if-env-changed=CHATMAIL_EMBED_DIR");
    let code = match std::env::var_os("CHATMAIL_EMBED_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => embed(Path::new(&dir), &out),
        None => String::new(),
    };
    std::fs::write(
        out.join("embedded_relay_binaries.rs"),
        format!("&[\n{code}]\n"),
    )
    .expect("write embedded_relay_binaries.rs");
}

/// The web pages' sources (src/www/mod.rs, `Source::Builtin`): `OUT_DIR/builtin_pages.rs`
/// lists every file of www/src as `(name, include_bytes!(path))`, so that the program
/// deploys them wherever it runs, not only beside the checkout it was built from.
fn builtin_pages(out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/src");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read www/src")
        .map(|e| e.expect("read www/src").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name in www/src");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("]\n");
    std::fs::write(out.join("builtin_pages.rs"), code).expect("write builtin_pages.rs");
}

/// The relay's component files (src/relay/components/mod.rs): `OUT_DIR/relay_<...>.rs` holds
/// a macro `NAME!(m)` calling `m!(file, ...)` with the module name of every `.rs` file of
/// `dir` but mod.rs, so that a new component is a new file and nothing else.
fn component_files(out: &Path, dir: &str, name: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".rs")
                        .map(String::from)
                })
                .filter(|f| f != "mod")
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let file = name.strip_prefix("with_").unwrap_or(name);
    std::fs::write(
        out.join(format!("relay_{file}.rs")),
        format!(
            "macro_rules! {name} {{ ($m:ident) => {{ $m!({}); }}; }}\n",
            files.join(", ")
        ),
    )
    .expect("write the component file list");
}

/// The entries `(arch, name, sha256 of the binary, gzip of the binary)` for every file of
/// `dir`/<arch>/, each compressed into `out` and included from there.
fn embed(dir: &Path, out: &Path) -> String {
    let mut code = String::new();
    let mut found = 0;
    for arch in ARCHES {
        let arch_dir = dir.join(arch);
        println!("cargo:rerun-if-changed={}", arch_dir.display());
        let Ok(entries) = std::fs::read_dir(&arch_dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let packed_dir = out.join("embedded").join(arch);
        std::fs::create_dir_all(&packed_dir).expect("create OUT_DIR/embedded");
        for name in names {
            let path = arch_dir.join(&name);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("CHATMAIL_EMBED_DIR: {}: {e}", path.display()));
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let packed = packed_dir.join(format!("{name}.gz"));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&bytes).expect("compress into memory");
            std::fs::write(&packed, gz.finish().expect("compress into memory"))
                .expect("write the compressed binary");
            code.push_str(&format!(
                "    ({arch:?}, {name:?}, {sha:?}, include_bytes!({:?}) as &[u8]),\n",
                packed.display().to_string()
            ));
            found += 1;
        }
    }
    if found == 0 {
        panic!(
            "CHATMAIL_EMBED_DIR={}: no relay binaries in its {} subdirectories",
            dir.display(),
            ARCHES.join(" or ")
        );
    }
    code
}

//! The engine on its own, without chatmail: nginx serving a templated page, a system user,
//! a directory, a pinned download and a tiny systemd service.
//!
//!     cargo run -p webhost -- --ssh-host HOST [--dry-run]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use engine::driver::{HostArgs, PlanArgs, deploy, run_main};
use operations::{Directory, Download, File, Group, Removed, Service, State, Templates, User};
use serde_json::json;

const LOGO_SHA256: &str = "40c5d8d577823b260a9bcff168e2d771ab8f452e8215ad669f07f84136ffdc3a";
const ROOT: &str = "/srv/webhost";
const USER: &str = "webhost";
const HEARTBEAT: &str = "webhost-heartbeat.service";
const NGINX: &str = "nginx.service";

#[derive(Parser)]
#[command(about = "Deploys a small web host with the chatmail-deploy engine")]
struct Args {
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    plan: PlanArgs,
    /// Text shown on the page
    #[arg(long, default_value = "Deployed by chatmail-deploy.")]
    message: String,
    /// Port nginx listens on
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Your own template for index.html instead of the built-in one
    #[arg(long, value_name = "FILE")]
    page_template: Option<PathBuf>,
    /// Upload this file as the logo instead of the bundled one (its sha256 must match the pin)
    #[arg(long, value_name = "FILE")]
    logo_file: Option<PathBuf>,
    /// Fetch the logo on the host from this URL instead of uploading it (needs curl there)
    #[arg(long, value_name = "URL", conflicts_with = "logo_file")]
    logo_url: Option<String>,
    /// Also install this Debian package (repeatable)
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Also manage this many small files under /srv/webhost/extra (for benchmarks)
    #[arg(long, default_value_t = 0)]
    extra_files: usize,
}

fn state(args: &Args) -> Result<State, operations::Error> {
    let mut t = Templates::new();
    match &args.page_template {
        Some(path) => t.add(
            "index.html",
            &std::fs::read_to_string(path).map_err(|source| operations::Error::LocalFile {
                path: path.display().to_string(),
                source,
            })?,
        )?,
        None => t.add("index.html", include_str!("index.html.j2"))?,
    }
    t.add("site.conf", include_str!("site.conf.j2"))?;
    t.add("heartbeat.sh", include_str!("heartbeat.sh.j2"))?;
    t.add("heartbeat.service", include_str!("heartbeat.service.j2"))?;
    let vars = json!({
        "title": "webhost",
        "message": args.message,
        "port": args.port,
        "root": ROOT,
        "user": USER,
        "interval": 10,
    });

    let mut s = State::new();
    s.package("nginx");
    if args.logo_url.is_some() {
        s.package("curl");
    }
    for name in &args.packages {
        s.package(name);
    }
    s.add(Group {
        name: USER.into(),
        system: true,
    });
    s.add(User {
        home: Some(ROOT.into()),
        shell: Some("/usr/sbin/nologin".into()),
        ..User::system(USER)
    });
    s.directory(Directory::new(ROOT).owner(USER, USER).mode(0o755));
    s.file(
        File::new(format!("{ROOT}/index.html"), t.render("index.html", &vars)?).owner(USER, USER),
    );
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("logo.svg");
    s.add(Download {
        path: format!("{ROOT}/logo.svg"),
        url: args.logo_url.clone().unwrap_or_default(),
        sha256: LOGO_SHA256.into(),
        extract: None,
        local: match &args.logo_url {
            Some(_) => None,
            None => Some(args.logo_file.clone().unwrap_or(bundled)),
        },
        owner: USER.into(),
        group: USER.into(),
        mode: 0o644,
        notify: vec![],
    });
    s.file(
        File::new(
            "/etc/nginx/sites-available/webhost",
            t.render("site.conf", &vars)?,
        )
        .reloads(NGINX),
    );
    s.add(operations::Symlink {
        path: "/etc/nginx/sites-enabled/webhost".into(),
        target: "/etc/nginx/sites-available/webhost".into(),
        notify: vec![operations::Notify::Reload(NGINX.into())],
    });
    s.add(Removed {
        path: "/etc/nginx/sites-enabled/default".into(),
        notify: vec![operations::Notify::Reload(NGINX.into())],
    });
    s.service(Service::running(NGINX));
    s.file(
        File::new(
            "/usr/local/bin/webhost-heartbeat",
            t.render("heartbeat.sh", &vars)?,
        )
        .mode(0o755)
        .restarts(HEARTBEAT),
    );
    s.file(
        File::new(
            format!("/etc/systemd/system/{HEARTBEAT}"),
            t.render("heartbeat.service", &vars)?,
        )
        .restarts(HEARTBEAT),
    );
    s.service(Service::running(HEARTBEAT));
    if args.extra_files > 0 {
        s.directory(Directory::new(format!("{ROOT}/extra")));
        for i in 0..args.extra_files {
            s.file(File::new(
                format!("{ROOT}/extra/file-{i:04}.txt"),
                format!("extra file {i}\n"),
            ));
        }
    }
    Ok(s)
}

fn main() -> ExitCode {
    let args = Args::parse();
    run_main(async {
        let state = state(&args)?;
        deploy(&args.host, &args.plan, &state).await
    })
}

//! The web side: pages, autoconfig, MTA-STS, /new through fcgiwrap, and the ALPN
//! multiplexer on port 443.

use operations::{Directory, File, Service, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Website, &Nginx];

const NGINX: &str = "nginx.service";

pub struct Nginx;

impl Component for Nginx {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "nginx",
            order: 140,
            units: &[NGINX, "fcgiwrap.socket"],
            ports: |_| {
                let nginx: &[&str] = &["nginx"];
                vec![
                    (80, &["acmetool", "nginx"]),
                    (443, nginx),
                    (8443, nginx),
                    // the 443 front's PROXY-protocol hops (HTTPS, SMTPS, IMAPS)
                    (8444, nginx),
                    (8465, nginx),
                    (8993, nginx),
                ]
            },
            templates: templates![
                "nginx/nginx.conf.j2",
                "nginx/autoconfig.xml.j2",
                "nginx/mta-sts.txt.j2",
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.package("fcgiwrap")
            .package("nginx")
            .package("libnginx-mod-stream");
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.file(
            relay
                .file("/etc/nginx/nginx.conf", "nginx/nginx.conf.j2")?
                .restarts(NGINX),
        );
        // declared so nginx (www-data) can read them: parents a file creates are root-only
        for dir in [
            ".well-known",
            ".well-known/autoconfig",
            ".well-known/autoconfig/mail",
        ] {
            s.directory(Directory::new(format!("/var/www/html/{dir}")));
        }
        s.file(relay.file(
            "/var/www/html/.well-known/autoconfig/mail/config-v1.1.xml",
            "nginx/autoconfig.xml.j2",
        )?);
        s.file(relay.file(
            "/var/www/html/.well-known/mta-sts.txt",
            "nginx/mta-sts.txt.j2",
        )?);
        s.directory(Directory::new("/usr/lib/cgi-bin"));
        // the old script name stays (fcgiwrap runs whatever is there): the multi-call
        // binary runs as `newemail` under it
        s.symlink(
            "/usr/lib/cgi-bin/newemail.py",
            &super::chatmaild::multi_call_path(),
        );
        Ok(())
    }

    fn activate(&self, _relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.service(Service::running("fcgiwrap.socket"));
        s.config_check(NGINX, "nginx -t -q");
        s.service(Service::running(NGINX));
        Ok(())
    }
}

/// The pages built from www/: all that `run --website-only` deploys.
pub struct Website;

impl Component for Website {
    // the web root before what nginx puts into it
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "website",
            order: 130,
            website: true,
            ..Declaration::NONE
        }
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        s.directory(Directory::new("/var/www"));
        s.directory(Directory::new("/var/www/html"));
        // the pages; other files there (autoconfig, mta-sts, the ACME webroot) stay
        for (path, bytes) in relay.website.iter().flatten() {
            s.file(
                File::new(format!("/var/www/html/{path}"), bytes.clone())
                    .owner("www-data", "www-data"),
            );
        }
        Ok(())
    }
}

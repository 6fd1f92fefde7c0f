//! Certificates: acmetool, self-signed, or the operator's own files.

use ::chatmaild::config::TlsMode;
use facts::shell::quote;
use operations::{Command, Guard, Removed, Service, State};

use super::{Component, Declaration, Relay};

pub const COMPONENTS: &[&dyn Component] = &[&Tls];

pub struct Tls;

impl Component for Tls {
    fn declaration(&self) -> &'static Declaration {
        &Declaration {
            name: "tls",
            order: 70,
            units: &["acmetool-redirector.service", "acmetool-reconcile.timer"],
            ports: |c| match c.tls_cert_mode {
                TlsMode::Acme => vec![(402, &["acmetool"])],
                _ => vec![],
            },
            templates: templates![
                "acme/hook-nginx",
                "acme/responses.j2",
                "acme/target.j2",
                "acme/desired.j2",
                "acme/acmetool-redirector.service",
                "acme/acmetool-reconcile.service",
                "acme/acmetool-reconcile.timer",
                "tls/tls-cert-reload.path.j2",
                "tls/tls-cert-reload.service",
            ],
            ..Declaration::NONE
        }
    }

    fn install(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        if relay.tls_mode() == TlsMode::Acme {
            s.package("acmetool");
            s.add(Removed {
                path: "/etc/cron.d/acmetool".into(),
                notify: vec![],
            });
            s.add(Removed {
                path: "/usr/lib/acme/hooks/nginx".into(),
                notify: vec![],
            });
            s.file(
                relay
                    .file("/etc/acme/hooks/nginx", "acme/hook-nginx")?
                    .mode(0o755),
            );
        }
        Ok(())
    }

    fn configure(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        let c = &relay.config;
        let d = &c.mail_domain_bare;
        match relay.tls_mode() {
            TlsMode::SelfSigned => {
                // generated once on the host; the key never leaves it
                let script = format!(
                    "set -e; mkdir -p /etc/ssl/certs /etc/ssl/private; \
                     openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc \
                     -days 36500 -keyout {key} -out {cert} -subj {subj} \
                     -addext basicConstraints=critical,CA:FALSE \
                     -addext extendedKeyUsage=serverAuth,clientAuth \
                     -addext {san} 2>/dev/null",
                    key = quote(&c.tls_key_path),
                    cert = quote(&c.tls_cert_path),
                    subj = quote(&format!("/CN={d}")),
                    san = quote(&format!(
                        "subjectAltName=DNS:{d},DNS:www.{d},DNS:mta-sts.{d}"
                    )),
                );
                s.add(Command::new(
                    format!("self-signed certificate for {d}: generate"),
                    script,
                    Guard::Creates(c.tls_cert_path.clone()),
                ));
            }
            TlsMode::External => {
                let (cert, key) = (quote(&c.tls_cert_path), quote(&c.tls_key_path));
                s.add(Command::new(
                    "external certificate: missing on the server",
                    format!(
                        "for f in {cert} {key}; do [ -e \"$f\" ] || echo \"External TLS file not found on server: $f\" >&2; done; exit 1"
                    ),
                    Guard::Unless(format!("test -e {cert} && test -e {key}")),
                ));
                s.file(relay.file(
                    "/etc/systemd/system/tls-cert-reload.path",
                    "tls/tls-cert-reload.path.j2",
                )?);
                s.file(relay.file(
                    "/etc/systemd/system/tls-cert-reload.service",
                    "tls/tls-cert-reload.service",
                )?);
            }
            TlsMode::Acme => {
                s.file(relay.file("/var/lib/acme/conf/responses", "acme/responses.j2")?);
                s.file(relay.file("/var/lib/acme/conf/target", "acme/target.j2")?);
                s.file(relay.file(&format!("/var/lib/acme/desired/{d}"), "acme/desired.j2")?);
                for unit in [
                    "acmetool-redirector.service",
                    "acmetool-reconcile.service",
                    "acmetool-reconcile.timer",
                ] {
                    s.file(
                        relay
                            .file(
                                &format!("/etc/systemd/system/{unit}"),
                                &format!("acme/{unit}"),
                            )?
                            .restarts(unit),
                    );
                }
            }
        }
        Ok(())
    }

    fn activate(&self, relay: &Relay, s: &mut State) -> anyhow::Result<()> {
        match relay.tls_mode() {
            TlsMode::External => {
                s.service(Service::running("tls-cert-reload.path"));
            }
            TlsMode::Acme => {
                s.service(Service::running("acmetool-redirector.service"));
                s.service(Service::stopped("acmetool-reconcile.service"));
                s.service(Service::running("acmetool-reconcile.timer"));
                let d = &relay.config.mail_domain_bare;
                s.add(Command::new(
                    format!("certificate for {d}: request with acmetool"),
                    "acmetool --batch reconcile",
                    Guard::Creates(relay.config.tls_cert_path.clone()),
                ));
            }
            TlsMode::SelfSigned => {}
        }
        Ok(())
    }
}

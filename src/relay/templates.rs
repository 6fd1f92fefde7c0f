//! Every config file template, compiled into the binary.

use operations::Templates;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// (name, source) of each file under templates/.
pub const SOURCES: &[(&str, &str)] = embedded![
    "base/00InstallRecommends",
    "systemd/journald.conf",
    "systemd/dict-service.service.j2",
    "systemd/oneshot.service.j2",
    "systemd/daily.timer.j2",
    "systemd/filtermail.service.j2",
    "unbound/chatmail.conf.j2",
    "unbound/resolv.conf",
    "acme/hook-nginx",
    "acme/responses.j2",
    "acme/target.j2",
    "acme/desired.j2",
    "acme/acmetool-redirector.service",
    "acme/acmetool-reconcile.service",
    "acme/acmetool-reconcile.timer",
    "tls/tls-cert-reload.path.j2",
    "tls/tls-cert-reload.service",
    "opendkim/opendkim.conf.j2",
    "opendkim/KeyTable.j2",
    "opendkim/SigningTable.j2",
    "opendkim/10-prevent-memory-leak.conf",
    "dovecot/dovecot.conf.j2",
    "dovecot/auth.conf",
    "dovecot/push_notification.lua",
    "dovecot/10_restart.conf",
    "postfix/main.cf.j2",
    "postfix/master.cf.j2",
    "postfix/submission_header_cleanup",
    "postfix/lmtp_header_cleanup",
    "postfix/smtp_tls_policy_map",
    "postfix/login_map",
    "postfix/10_restart.conf",
    "nginx/nginx.conf.j2",
    "nginx/autoconfig.xml.j2",
    "nginx/mta-sts.txt.j2",
    "iroh/iroh-relay.service",
    "iroh/iroh-relay.toml",
    "iroh/turnserver.service.j2",
    "mtail/mtail.service.j2",
    "mtail/delivered_mail.mtail",
];

pub fn load() -> anyhow::Result<Templates> {
    let mut t = Templates::new();
    for (name, source) in SOURCES {
        t.add(name, source)?;
    }
    Ok(t)
}

//! What every component reads: the parsed chatmail.ini, the deploy options, the templates
//! and the variables they are rendered with.

use std::path::Path;

use ::chatmaild::config::{Config, TlsMode};
use anyhow::Context;
use operations::{File, Templates};
use serde_json::{Value, json};

use super::release::Release;
use super::{RelayOptions, components, templates};

/// Where the relay's own binaries go on the host.
pub const BIN_DIR: &str = "/usr/local/bin";
/// The one config file of all server-side services.
pub const INI_PATH: &str = "/usr/local/lib/chatmaild/chatmail.ini";

const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const LETSENCRYPT_AGREEMENT: &str =
    "acme-agreement:https://letsencrypt.org/documents/LE-SA-v1.8-July-06-2026.pdf";

pub struct Relay {
    pub config: Config,
    /// chatmail.ini exactly as the operator wrote it; uploaded byte for byte.
    pub ini: Vec<u8>,
    pub options: RelayOptions,
    /// The built web pages (relative path, bytes); `None` when disabled or failed to build.
    pub website: Option<Vec<(String, Vec<u8>)>>,
    /// What the operator must read about the inputs (the command reports them: the model
    /// never prints).
    pub warnings: Vec<String>,
    templates: Templates,
    vars: Value,
    /// The host's machine and libc, once its facts are known: binaries are checked against it.
    host_abi: Option<super::elf::HostAbi>,
    /// The host's Debian release (Debian 12 until its facts are known).
    pub release: Release,
}

impl Relay {
    pub fn load(ini_path: &Path, options: RelayOptions) -> anyhow::Result<Relay> {
        let ini = std::fs::read(ini_path)
            .with_context(|| format!("cannot read {}", ini_path.display()))?;
        let config = Config::load(ini_path)?;
        Self::new(config, ini, options)
    }

    pub fn new(config: Config, ini: Vec<u8>, options: RelayOptions) -> anyhow::Result<Relay> {
        if let Some(name) = options
            .local_binaries
            .keys()
            .find(|name| components::pin(name).is_none())
        {
            anyhow::bail!(
                "--binary {name}=...: no component downloads {name} (known: {})",
                components::pin_names().join(", ")
            );
        }
        let vars = variables(&config, &options);
        let templates = templates::load(options.template_dir.as_deref())?;
        let mut warnings = Vec::new();
        let website = build_website(&config, &mut warnings);
        Ok(Relay {
            config,
            ini,
            options,
            website,
            warnings,
            templates,
            vars,
            host_abi: None,
            release: Release::default(),
        })
    }

    /// The same relay for a host of architecture `arch`.
    pub fn with_arch(&self, arch: &str) -> Relay {
        let mut options = self.options.clone();
        options.arch = arch.to_string();
        Relay {
            config: self.config.clone(),
            ini: self.ini.clone(),
            options,
            website: self.website.clone(),
            warnings: self.warnings.clone(),
            templates: templates::load(self.options.template_dir.as_deref())
                .expect("the templates loaded once already"),
            vars: self.vars.clone(),
            host_abi: self.host_abi.clone(),
            release: self.release,
        }
    }

    /// The same relay for a host of Debian `release`.
    pub fn with_release(&self, release: Release) -> Relay {
        let mut relay = self.with_arch(&self.options.arch);
        relay.release = release;
        relay.vars["debian_version"] = Value::from(release.version_id());
        relay
    }

    /// The same relay for the host these facts describe: its architecture, the libc its
    /// binaries must fit, and whether chatmail's Dovecot build runs there after this run
    /// (the Dovecot config differs for Debian's build).
    pub fn for_host(&self, facts: &facts::HostFacts) -> Relay {
        let release = Release::of(&facts.os).unwrap_or_default();
        let mut relay = self.with_release(release).with_arch(&facts.arch);
        relay.host_abi = Some(super::elf::HostAbi::from_facts(facts));
        let chatmail =
            release.has_chatmail_dovecot() && relay.options.dovecot_debs.runs_after_this_run(facts);
        relay.vars["dovecot_chatmail_build"] = Value::Bool(chatmail);
        relay
    }

    /// Refuses a program the host cannot run (see [`super::elf::check`]).
    pub fn check_program(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        match &self.host_abi {
            Some(abi) => super::elf::check(&path.display().to_string(), bytes, abi)
                .map_err(anyhow::Error::msg),
            None => Ok(()),
        }
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.config.tls_cert_mode.clone()
    }

    /// Renders a template with the relay's variables plus `extra`.
    pub fn render(&self, name: &str, extra: Value) -> anyhow::Result<Vec<u8>> {
        let mut vars = self.vars.clone();
        if let (Some(base), Value::Object(more)) = (vars.as_object_mut(), extra) {
            base.extend(more);
        }
        Ok(self.templates.render(name, vars)?)
    }

    /// A root-owned 0644 file rendered from `template`.
    pub fn file(&self, path: &str, template: &str) -> anyhow::Result<File> {
        Ok(File::new(path, self.render(template, json!({}))?))
    }

    /// The relay's binary `name` as the executable file `path`, built for the host: from
    /// `--bin-dir` if given, else the one this program carries for the host's arch (uploaded
    /// as the gzip stream it is stored as), else the file next to this program (a build from
    /// source). Each is checked against the host first.
    pub fn binary_file(&self, path: &str, name: &str) -> anyhow::Result<File> {
        let dir = match &self.options.bin_dir {
            Some(dir) => dir.clone(),
            None => {
                if let Some(embedded) = super::embedded::binary(&self.options.arch, name) {
                    let embedded = embedded.map_err(anyhow::Error::msg)?;
                    let label = format!("embedded {}/{name}", self.options.arch);
                    self.check_program(Path::new(&label), &embedded.bytes)?;
                    return Ok(File::new(path, embedded.bytes)
                        .mode(0o755)
                        .gzipped(embedded.gzip));
                }
                beside_this_program()?
            }
        };
        let local = dir.join(name);
        let bytes = std::fs::read(&local).with_context(|| {
            format!(
                "relay binary {} is missing: build it with `cargo build --release -p chatmaild` or pass --bin-dir",
                local.display()
            )
        })?;
        self.check_program(&local, &bytes)?;
        Ok(File::new(path, bytes).mode(0o755))
    }
}

fn beside_this_program() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The pages from `www_folder`; a disabled or broken site leaves the deployed one alone.
fn build_website(config: &Config, warnings: &mut Vec<String>) -> Option<Vec<(String, Vec<u8>)>> {
    let ini_dir = config.inipath.parent().unwrap_or(Path::new("."));
    let Some(source) = crate::www::source(config, ini_dir) else {
        warnings.push(format!(
            "building web pages is disabled (www_folder = {})",
            config.www_folder
        ));
        return None;
    };
    match crate::www::build(config, &source) {
        Ok(files) => Some(files),
        Err(e) => {
            warnings.push(format!(
                "web page build failed, skipping the website: {e:#}"
            ));
            None
        }
    }
}

fn variables(c: &Config, o: &RelayOptions) -> Value {
    json!({
        "mail_domain": c.mail_domain,
        // until the host's facts say otherwise (see `with_dovecot_facts`)
        "dovecot_chatmail_build": true,
        "debian_version": "12",
        "mail_domain_bare": c.mail_domain_bare,
        "postfix_myhostname": c.postfix_myhostname,
        "ipv4_relay": c.ipv4_relay.is_some(),
        "tls_mode": c.tls_cert_mode.as_str(),
        "tls_cert_path": c.tls_cert_path,
        "tls_key_path": c.tls_key_path,
        "disable_ipv6": c.disable_ipv6,
        "max_message_size": c.max_message_size,
        "max_mailbox_size_mb": c.max_mailbox_size_mb,
        "quota_expire_target_mb": c.quota_expire_target_mb(),
        "max_imap_connections": c.max_imap_connections,
        "max_smtp_connections": c.max_smtp_connections,
        "smtp_connections_per_client": c.max_smtp_connections / 5,
        "mailboxes_dir": c.mailboxes_dir.display().to_string(),
        "privacy_mail": c.privacy_mail.clone().unwrap_or_default(),
        "imap_rawlog": c.imap_rawlog,
        "imap_compress": c.imap_compress,
        "mtail_address": c.mtail_address.clone().unwrap_or_default(),
        "filtermail_smtp_port": c.filtermail_smtp_port,
        "filtermail_smtp_port_incoming": c.filtermail_smtp_port_incoming,
        "filtermail_http_port_incoming": c.filtermail_http_port_incoming,
        "filtermail_lmtp_port_transport": c.filtermail_lmtp_port_transport,
        "postfix_reinject_port": c.postfix_reinject_port,
        "postfix_reinject_port_incoming": c.postfix_reinject_port_incoming,
        "acme_email": c.acme_email,
        "acme_directory": o.acme_directory.clone().unwrap_or_else(|| LETSENCRYPT.into()),
        "acme_agreement": o.acme_agreement.clone().unwrap_or_else(|| LETSENCRYPT_AGREEMENT.into()),
        "bin_dir": BIN_DIR,
        "ini_path": INI_PATH,
    })
}

//! The web endpoints clients and other servers use: autoconfig, the MTA-STS policy and
//! `/new` (all behind the port-443 mux).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::Relay;
use super::report::Report;

pub fn start(relay: &Arc<Relay>, report: &mut Report) {
    let autoconfig = report.check("autoconfig");
    let mta_sts = report.check("MTA-STS policy");
    let new = report.check("/new creates an address");
    let r = relay.clone();
    tokio::spawn(async move {
        autoconfig.result(check_autoconfig(&r).await);
    });
    let r = relay.clone();
    tokio::spawn(async move {
        if r.ipv4 {
            return mta_sts.skip("an IP relay has no domain for MTA-STS");
        }
        mta_sts.result(check_mta_sts(&r).await);
    });
    let r = relay.clone();
    tokio::spawn(async move {
        new.result(check_new(&r).await);
    });
}

fn client(relay: &Relay, resolve: Option<(&str, SocketAddr)>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(relay.insecure)
        .timeout(relay.timeout)
        // redirects would hide what the relay itself serves at the URL
        .redirect(reqwest::redirect::Policy::none());
    if let Some((name, addr)) = resolve {
        builder = builder.resolve(name, addr);
    }
    Ok(builder.build()?)
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| root_cause(&e).context(format!("GET {url}")))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}");
    }
    Ok(response.text().await?)
}

/// reqwest's errors repeat the URL and wrap the cause in several layers; the innermost
/// cause is what the operator needs on one line.
fn root_cause(err: &reqwest::Error) -> anyhow::Error {
    if err.is_timeout() {
        return anyhow::anyhow!("timed out");
    }
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    anyhow::anyhow!("{cause}")
}

async fn check_autoconfig(relay: &Relay) -> anyhow::Result<String> {
    let url = format!(
        "https://{}/.well-known/autoconfig/mail/config-v1.1.xml",
        relay.host
    );
    let xml = get(&client(relay, None)?, &url).await?;
    if !xml.contains(&format!("<emailProvider id=\"{}\"", relay.mail_domain)) {
        bail!("the XML does not name {}", relay.mail_domain);
    }
    let servers = xml.matches("<hostname>").count();
    Ok(format!("{servers} servers"))
}

/// `mta-sts.<domain>` from DNS; self-signed test domains usually have no such record, so
/// there the policy is asked from the mail domain's address (nginx serves both names from
/// one server block).
async fn check_mta_sts(relay: &Relay) -> anyhow::Result<String> {
    let name = format!("mta-sts.{}", relay.host);
    let url = format!("https://{name}/.well-known/mta-sts.txt");
    let resolves = tokio::net::lookup_host((name.as_str(), 443)).await.is_ok();
    let (client, note) = if resolves {
        (client(relay, None)?, String::new())
    } else if relay.host.starts_with('_') {
        let addr = tokio::net::lookup_host((relay.host.as_str(), 443))
            .await?
            .next()
            .context("the mail domain has no address")?;
        (
            client(relay, Some((&name, addr)))?,
            format!(" ({name} is not in DNS: asked {})", relay.host),
        )
    } else {
        bail!("{name} does not resolve");
    };
    let policy = get(&client, &url).await?;
    let lines: Vec<&str> = policy.lines().map(str::trim).collect();
    for want in ["version: STSv1", &format!("mx: {}", relay.host)] {
        if !lines.contains(&want) {
            bail!("the policy has no line {want:?}");
        }
    }
    let mode = lines
        .iter()
        .find_map(|l| l.strip_prefix("mode:"))
        .unwrap_or("")
        .trim();
    Ok(format!("mode {mode}{note}"))
}

async fn check_new(relay: &Relay) -> anyhow::Result<String> {
    let url = format!("https://{}/new", relay.host);
    let response = client(relay, None)?
        .post(&url)
        .send()
        .await
        .map_err(|e| root_cause(&e).context(format!("POST {url}")))?;
    let status = response.status();
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}");
    }
    let json: serde_json::Value = response.json().await.context("the answer is not JSON")?;
    let email = json["email"].as_str().unwrap_or("");
    let password = json["password"].as_str().unwrap_or("");
    if !email.ends_with(&format!("@{}", relay.mail_domain)) {
        bail!("email {email:?} is not at {}", relay.mail_domain);
    }
    if password.len() < relay.rules.password_min_length {
        bail!("the password is shorter than password_min_length");
    }
    Ok(email.to_owned())
}

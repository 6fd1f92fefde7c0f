//! `dns`: check the relay's DNS records and print the zone-file lines to add or fix.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chatmaild::config::Config;
use engine::driver::HostArgs;
use engine::transport::{Host, Target};
use hickory_resolver::TokioResolver;
use tokio::task::JoinSet;

use super::ConfigArg;
use crate::dns::check::{self, Outcome, Verdict};
use crate::dns::host::{self, SmtpProbe};
use crate::dns::records::{self, Expected, HostFacts, Need, RelayDomain, Rtype, Rule};
use crate::dns::zonefile::{self, Fix};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Write the records to add or fix to FILE (BIND zone-file syntax)
    #[arg(long, value_name = "FILE")]
    zonefile: Option<PathBuf>,
    /// The relay host: HOST, USER@HOST:PORT, a Host alias or @local (default: the mail domain)
    #[arg(long, value_name = "HOST")]
    ssh_host: Option<String>,
    /// Ask this DNS server (default: the zone's authoritative servers, else the system's resolvers)
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_server)]
    resolver: Option<SocketAddr>,
    /// Check from the host that this mail server answers on port 25
    #[arg(long, value_name = "HOST", default_value = "nine.testrun.org")]
    smtp_probe: String,
    /// known_hosts file to check the host key against
    #[arg(long, env = "CHATMAIL_KNOWN_HOSTS", value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Record the host key if the host is not in known_hosts yet
    #[arg(long)]
    accept_new_host_key: bool,
    /// ssh config file for Host aliases
    #[arg(long, env = "CHATMAIL_SSH_CONFIG", value_name = "FILE")]
    ssh_config: Option<PathBuf>,
}

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| "expected an IP address with an optional :PORT".into())
}

/// Appends one line to the report.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

/// Writes the report at once; a reader that went away (`| head`) is no error.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// The whole check never takes longer than this: each step has its own timeout, this is
/// the backstop.
const DEADLINE: Duration = Duration::from_secs(120);

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match tokio::time::timeout(DEADLINE, check(args)).await {
        Ok(result) => result,
        Err(_) => bail!(
            "the DNS check did not finish within {} s",
            DEADLINE.as_secs()
        ),
    }
}

async fn check(args: Args) -> anyhow::Result<ExitCode> {
    let path = &args.config.config;
    if !path.exists() {
        bail!("expecting {} to exist, run init first?", path.display());
    }
    let config = Config::load(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(ip) = config.ipv4_relay {
        emit(&format!(
            "[WARNING] {ip} is not a domain, skipping DNS checks.\n"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let relay = RelayDomain::from_config(&config);
    let (resolver, follow, server) = choose_servers(args.resolver, &relay.domain).await?;
    let mut out = format!("DNS answers from {server}\n");

    let (facts, smtp) = host_facts(&args, &relay).await?;
    let mut expected = records::expected(&relay, &facts, &new_sts_id());
    let outcomes = resolve_all(&resolver, follow.as_ref(), &expected).await;
    keep_published_sts_id(&mut expected, &outcomes);

    let (mut failed_required, fixes) = report(&mut out, &expected, &outcomes);
    if facts.dkim_public_key.is_none() {
        outln!(
            out,
            "{:<8} {:<5} {:<40} no DKIM key on the host (/etc/dkimkeys/opendkim.private): run `chatmail-deploy run` first",
            "missing",
            "TXT",
            format!("opendkim._domainkey.{}.", relay.domain)
        );
        failed_required += 1;
    }
    match &smtp {
        SmtpProbe::Ok => outln!(
            out,
            "ok       the host reaches {} on port 25 (outgoing mail)",
            args.smtp_probe
        ),
        SmtpProbe::Failed(why) => outln!(
            out,
            "warning  the host cannot reach {} on port 25 ({why}): mail to other servers will not leave",
            args.smtp_probe
        ),
    }

    let zone = zonefile::render(&fixes);
    match &args.zonefile {
        Some(file) => {
            std::fs::write(file, &zone).with_context(|| format!("writing {}", file.display()))?;
            outln!(out, "\nrecords to add or fix written to {}", file.display());
        }
        None => outln!(out, "\n{}", zone.trim_end()),
    }
    let code = if failed_required == 0 {
        outln!(out, "\nall required DNS records are correct");
        ExitCode::SUCCESS
    } else {
        outln!(
            out,
            "\n{failed_required} required DNS record{} missing or wrong",
            if failed_required == 1 { " is" } else { "s are" }
        );
        ExitCode::FAILURE
    };
    emit(&out);
    Ok(code)
}

/// Prints one line per record; returns how many required ones failed, and the fixes.
fn report<'a>(
    out: &mut String,
    expected: &'a [Expected],
    outcomes: &[Outcome],
) -> (usize, Vec<Fix<'a>>) {
    let mut failed_required = 0;
    let mut fixes = Vec::new();
    for (record, outcome) in expected.iter().zip(outcomes) {
        let verdict = check::judge(record, outcome);
        let (status, detail) = match &verdict {
            Verdict::Ok(d) => ("ok", d.clone()),
            Verdict::Missing(d) => ("missing", d.clone()),
            Verdict::Wrong(d) => ("wrong", format!("found {d}")),
            Verdict::Unknown(d) => ("unknown", format!("could not check: {d}")),
        };
        let note = match (&verdict, record.need) {
            (Verdict::Ok(_), _) => "",
            (_, Need::Required) => " (required)",
            (_, Need::Recommended) => " (recommended)",
        };
        outln!(
            out,
            "{status:<8} {:<5} {:<40} {}: {detail}{note}",
            record.rtype.to_string(),
            record.name,
            record.label
        );
        if !verdict.is_ok() {
            if record.need == Need::Required {
                failed_required += 1;
            }
            fixes.push(Fix {
                record,
                reason: format!("{status}: {detail}"),
            });
        }
    }
    (failed_required, fixes)
}

/// The resolver to ask, one to follow CNAMEs out of the zone with, and a description.
/// `--resolver` is asked alone; otherwise the zone's authoritative servers, found through
/// the system's resolvers (which are used when they cannot be found or do not answer).
/// A server that does not answer at all is an error, not a list of failed records.
async fn choose_servers(
    given: Option<SocketAddr>,
    domain: &str,
) -> anyhow::Result<(TokioResolver, Option<TokioResolver>, String)> {
    let apex = format!("{domain}.");
    if let Some(addr) = given {
        let resolver = check::resolver(Some(addr))?;
        let server = format!("the DNS server {addr}");
        if let Outcome::Failed(why) = check::lookup(&resolver, &apex, Rtype::Mx).await {
            bail!("cannot check DNS records: {server}: {why}");
        }
        return Ok((resolver, None, server));
    }
    let system = check::resolver(None)?;
    if let Some((zone, servers)) = check::authoritative(&system, domain).await {
        let ips: Vec<IpAddr> = servers.iter().map(|(_, ip)| *ip).collect();
        let auth = check::resolver_for(&ips)?;
        if !matches!(
            check::lookup(&auth, &apex, Rtype::Mx).await,
            Outcome::Failed(_)
        ) {
            let mut names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
            names.dedup();
            let server = format!("the authoritative servers of {zone} ({})", names.join(", "));
            return Ok((auth, Some(system), server));
        }
    }
    let server = "the system's DNS resolvers".to_string();
    if let Outcome::Failed(why) = check::lookup(&system, &apex, Rtype::Mx).await {
        bail!("cannot check DNS records: {server}: {why}");
    }
    Ok((system, None, server))
}

/// Connects to the host (the mail domain unless --ssh-host says otherwise) and gathers
/// what the records depend on.
async fn host_facts(args: &Args, relay: &RelayDomain) -> anyhow::Result<(HostFacts, SmtpProbe)> {
    let host_args = HostArgs {
        ssh_host: Some(
            args.ssh_host
                .clone()
                .unwrap_or_else(|| relay.domain.clone()),
        ),
        known_hosts: args.known_hosts.clone(),
        accept_new_host_key: args.accept_new_host_key,
        ssh_config: args.ssh_config.clone(),
    };
    let target = host_args.target()?;
    let preferred = match &target {
        Target::Ssh { host, .. } => host.parse::<IpAddr>().ok(),
        Target::Local => None,
    };
    let remote = Host::connect(&target, &host_args.ssh_options()?)
        .await
        .with_context(|| format!("connecting to {}", target.describe()))?;
    let result = host::gather(&remote, &args.smtp_probe, preferred)
        .await
        .with_context(|| format!("gathering facts on {}", target.describe()));
    remote.close().await;
    let (facts, smtp) = result?;
    if facts.addrs.is_empty() {
        bail!("{} has no global IP address", target.describe());
    }
    Ok((facts, smtp))
}

/// All lookups at once: the total time is that of the slowest, each bounded.
async fn resolve_all(
    resolver: &TokioResolver,
    follow: Option<&TokioResolver>,
    expected: &[Expected],
) -> Vec<Outcome> {
    let mut set = JoinSet::new();
    for (i, record) in expected.iter().enumerate() {
        let (resolver, follow, record) = (resolver.clone(), follow.cloned(), record.clone());
        set.spawn(async move {
            let outcome = check::resolve_following(&resolver, follow.as_ref(), &record).await;
            (i, outcome)
        });
    }
    let mut outcomes = vec![Outcome::Failed("lookup did not finish".into()); expected.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, outcome)) = joined {
            outcomes[i] = outcome;
        }
    }
    outcomes
}

/// Senders cache the MTA-STS policy by id: a valid published id is kept, so that a fix
/// elsewhere does not suggest changing it.
fn keep_published_sts_id(expected: &mut [Expected], outcomes: &[Outcome]) {
    for (record, outcome) in expected.iter_mut().zip(outcomes) {
        if record.rule != Rule::MtaSts {
            continue;
        }
        if let Outcome::Records { answers, .. } = outcome {
            let id = answers.iter().find_map(|a| match a {
                check::Answer::Txt(t) => check::sts_id(t),
                _ => None,
            });
            if let Some(id) = id {
                record.data = format!("v=STSv1; id={id}");
            }
        }
    }
}

fn new_sts_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    records::new_sts_id(now)
}

//! SSH with russh: one connection per run (through ProxyJump hosts if the ssh config says
//! so), login with keys from ssh-agent or IdentityFile, strict host-key checking against
//! known_hosts on every hop, at most 4 channels in flight.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use facts::{ExecOutput, LineSplitter, RemoteError};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{
    PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate, known_hosts,
};
use russh::{ChannelMsg, Disconnect};

use super::lock::HEARTBEAT_SECS;
use super::target::{Hop, user_host_port};
use super::{Gate, Held, HeldStart};
use crate::error::{Error, from_anyhow};

/// sshd allows 10 sessions per connection by default and frees closed ones lazily.
const MAX_CHANNELS: usize = 4;

#[derive(Debug, Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    /// Record the key of a host not yet in known_hosts (a changed key is always refused).
    pub accept_new_host_key: bool,
    pub connect_timeout: Duration,
}

pub struct Ssh {
    handle: Handle<HostKeyCheck>,
    /// the jump hosts' connections carry this one: dropped after it (field order)
    jumps: Vec<Handle<HostKeyCheck>>,
    gate: Gate,
}

/// What the host-key check decided, kept so that a refused connection gets a clear error.
#[derive(Debug, Clone)]
enum Verdict {
    Known,
    Learned,
    Unknown(String),
    Changed(String),
    Failed(String),
}

struct HostKeyCheck {
    host: String,
    port: u16,
    options: SshOptions,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.lock().unwrap() = Some(Verdict::Failed(
                "the host presented a certificate; only plain host keys are supported".into(),
            ));
            return Ok(false);
        };
        let path = &self.options.known_hosts;
        let verdict = match known_hosts::check_known_hosts_path(&self.host, self.port, key, path) {
            Ok(true) => Verdict::Known,
            Ok(false) if self.options.accept_new_host_key => {
                match known_hosts::learn_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(()) => Verdict::Learned,
                    Err(e) => Verdict::Failed(format!(
                        "cannot record the host key in {}: {e}",
                        path.display()
                    )),
                }
            }
            Ok(false) => Verdict::Unknown(key.fingerprint(Default::default()).to_string()),
            Err(russh::keys::Error::KeyChanged { line }) => {
                Verdict::Changed(format!("{}:{line}", path.display()))
            }
            Err(e) => Verdict::Failed(format!("cannot check {}: {e}", path.display())),
        };
        let ok = matches!(verdict, Verdict::Known | Verdict::Learned);
        *self.verdict.lock().unwrap() = Some(verdict);
        Ok(ok)
    }
}

impl Ssh {
    /// Connects to the last hop of `route` through the ones before it (ProxyJump): each
    /// later hop is an SSH session inside a direct-tcpip channel of the one before, with
    /// its own host-key check and login.
    pub async fn connect(route: &[Hop], options: &SshOptions) -> Result<Ssh, Error> {
        Ssh::connect_route(route, options)
            .await
            .map_err(from_anyhow(Error::Connect))
    }

    async fn connect_route(route: &[Hop], options: &SshOptions) -> anyhow::Result<Ssh> {
        let (target, jumps) = route.split_last().context("no host to connect to")?;
        let mut handles: Vec<Handle<HostKeyCheck>> = Vec::new();
        for hop in jumps {
            let who = user_host_port(&hop.user, &hop.host, hop.port);
            let label = if hop.name == who {
                format!("jump host {who}")
            } else {
                format!("jump host {} ({who})", hop.name)
            };
            handles.push(connect_hop(hop, &label, handles.last(), options).await?);
        }
        let who = user_host_port(&target.user, &target.host, target.port);
        let handle = connect_hop(target, &who, handles.last(), options)
            .await
            .map_err(|e| match jumps.last() {
                Some(j) => anyhow!("{e:#} (through jump host {})", j.name),
                None => e,
            })?;
        Ok(Ssh {
            handle,
            jumps: handles,
            gate: Gate::new(MAX_CHANNELS),
        })
    }

    pub fn exec_count(&self) -> usize {
        self.gate.exec_count()
    }

    pub fn uploaded_bytes(&self) -> usize {
        self.gate.uploaded_bytes()
    }

    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, RemoteError> {
        self.exec_streaming(command, stdin, &|_| {}).await
    }

    pub async fn exec_streaming(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<ExecOutput, RemoteError> {
        let _slot = self.gate.enter(stdin.len()).await?;
        let channel = self.open_channel().await?;
        channel.exec(true, command).await.map_err(lost)?;
        // Send stdin while reading the answer: a command that fails half-way (a full disk
        // under `cat > file`) stops reading, the window never reopens, and a send that had
        // to finish first would wait forever for the exit status already sent.
        let (mut reader, writer) = channel.split();
        let send = async {
            if !stdin.is_empty() {
                writer.data(stdin).await?;
            }
            writer.eof().await
        };
        tokio::pin!(send);
        let mut sending = true;
        let mut out = ExecOutput::default();
        let mut closed_cleanly = false;
        let (mut out_lines, mut err_lines) = (LineSplitter::default(), LineSplitter::default());
        // data may still arrive after the exit status: read until the channel ends
        loop {
            let msg = tokio::select! {
                sent = &mut send, if sending => {
                    sending = false;
                    // a failed send is no error by itself: the command may have ended
                    // without reading everything, and its exit status tells why; only a
                    // channel that ends without one is an error (below)
                    drop(sent);
                    continue;
                }
                msg = reader.wait() => msg,
            };
            let Some(msg) = msg else { break };
            match msg {
                ChannelMsg::Data { data } => {
                    out_lines.push(&data, on_line);
                    out.stdout.extend_from_slice(&data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    err_lines.push(&data, on_line);
                    out.stderr.extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    out.status = Some(exit_status);
                    closed_cleanly = true;
                }
                ChannelMsg::ExitSignal { .. } => closed_cleanly = true,
                _ => {}
            }
        }
        out_lines.flush(on_line);
        err_lines.flush(on_line);
        if !closed_cleanly {
            return Err(RemoteError(
                "ssh connection lost while the command ran".into(),
            ));
        }
        Ok(out)
    }

    /// Starts `command` and reads its stdout until `marker`; the command then keeps running,
    /// fed a heartbeat line every [`HEARTBEAT_SECS`] s, until [`Held::release`] or the end
    /// of the connection closes its stdin. A command that ends before the marker is answered
    /// like [`Ssh::exec`].
    pub async fn exec_held(&self, command: &str, marker: &str) -> Result<HeldStart, RemoteError> {
        self.gate.count.bump(0);
        let channel = self.open_channel().await?;
        channel.exec(true, command).await.map_err(lost)?;
        let (mut reader, writer) = channel.split();
        let mut out = ExecOutput::default();
        let mut ended_cleanly = false;
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    out.stdout.extend_from_slice(&data);
                    if ends_with(&out.stdout, marker) {
                        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                        let lock_lost = self.gate.lock_lost.clone();
                        let task = tokio::spawn(async move {
                            let mut tick =
                                tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
                            tick.tick().await;
                            tokio::pin!(stopped);
                            loop {
                                tokio::select! {
                                    _ = tick.tick() => {
                                        if writer.data(&b"\n"[..]).await.is_err() {
                                            lock_lost.set();
                                            return;
                                        }
                                    }
                                    // the holder prints nothing more; this is the channel's end
                                    msg = reader.wait() => if msg.is_none() {
                                        lock_lost.set();
                                        return;
                                    },
                                    _ = &mut stopped => break,
                                }
                            }
                            // end of stdin ends the holder; wait for it, so that the lock is
                            // free when this run reports that it is done
                            let _ = writer.eof().await;
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                while reader.wait().await.is_some() {}
                            })
                            .await;
                        });
                        return Ok(HeldStart::Holding(out, Held { stop, task }));
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    out.status = Some(exit_status);
                    ended_cleanly = true;
                }
                ChannelMsg::ExitSignal { .. } => ended_cleanly = true,
                _ => {}
            }
        }
        if !ended_cleanly {
            return Err(RemoteError(
                "ssh connection lost while the command ran".into(),
            ));
        }
        Ok(HeldStart::Ended(out))
    }

    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, RemoteError> {
        let mut delay = Duration::from_millis(20);
        for _ in 0..8 {
            match self.handle.channel_open_session().await {
                Ok(c) => return Ok(c),
                Err(russh::Error::ChannelOpenFailure(_)) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    return Err(RemoteError(format!(
                        "ssh connection lost: {}",
                        describe(&e)
                    )));
                }
            }
        }
        Err(RemoteError(
            "the server refuses to open more ssh sessions".into(),
        ))
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        for jump in self.jumps.iter().rev() {
            let _ = jump.disconnect(Disconnect::ByApplication, "", "en").await;
        }
    }
}

/// Opens the SSH session of `hop`, over TCP or, with `via`, over a direct-tcpip channel of
/// the jump host before it; checks its host key and logs in. `who` names it in errors.
async fn connect_hop(
    hop: &Hop,
    who: &str,
    via: Option<&Handle<HostKeyCheck>>,
    options: &SshOptions,
) -> anyhow::Result<Handle<HostKeyCheck>> {
    let verdict = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck {
        host: hop.host.clone(),
        port: hop.port,
        options: options.clone(),
        verdict: verdict.clone(),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        preferred: preferred_for(&hop.host, hop.port, options),
        ..client::Config::default()
    });
    let connecting = async {
        match via {
            None => client::connect(config, (hop.host.as_str(), hop.port), handler).await,
            Some(jump) => {
                let channel = jump
                    .channel_open_direct_tcpip(hop.host.as_str(), hop.port.into(), "127.0.0.1", 0)
                    .await?;
                client::connect_stream(config, channel.into_stream(), handler).await
            }
        }
    };
    let mut handle = match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => bail!(
            "cannot connect to {who}: no answer within {} s",
            options.connect_timeout.as_secs()
        ),
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let v = verdict.lock().unwrap().clone();
            let host = &hop.host;
            return Err(match v {
                Some(Verdict::Changed(at)) => anyhow!(
                    "host key of {host} has CHANGED (known key at {at}): refusing to connect; if the server was reinstalled, remove that line"
                ),
                Some(Verdict::Unknown(fp)) => anyhow!(
                    "host key of {host} is not known ({fp}) in {}: check it, then rerun with --accept-new-host-key",
                    options.known_hosts.display()
                ),
                Some(Verdict::Failed(why)) => anyhow!("cannot connect to {who}: {why}"),
                _ if via.is_some() && matches!(e, russh::Error::ChannelOpenFailure(_)) => anyhow!(
                    "cannot connect to {who}: the jump host could not open a connection to it ({})",
                    describe(&e)
                ),
                _ => anyhow!("cannot connect to {who}: {}", describe(&e)),
            });
        }
    };
    login(&mut handle, hop, who).await?;
    Ok(handle)
}

/// A key from IdentityFile: its public half (from the private file, or `.pub` beside it),
/// and the private key if it can be used without a passphrase.
struct IdentityFile {
    path: PathBuf,
    public: Option<PublicKey>,
    private: Option<PrivateKey>,
}

impl IdentityFile {
    fn load(path: &Path) -> IdentityFile {
        let private = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| PrivateKey::from_openssh(t).ok());
        let public = match &private {
            Some(k) => Some(k.public_key().clone()),
            None => russh::keys::load_public_key(pub_path(path)).ok(),
        };
        IdentityFile {
            path: path.to_path_buf(),
            public,
            private: private.filter(|k| !k.is_encrypted()),
        }
    }
}

fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Logs in as OpenSSH does: first the keys IdentityFile names (from the agent when it holds
/// them, else from the file if it has no passphrase), then, unless IdentitiesOnly, the
/// agent's other keys.
async fn login(handle: &mut Handle<HostKeyCheck>, hop: &Hop, who: &str) -> anyhow::Result<()> {
    let files: Vec<IdentityFile> = hop
        .keys
        .files
        .iter()
        .map(|p| IdentityFile::load(p))
        .collect();
    let agent_sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    let mut agent = None;
    let mut in_agent = Vec::new();
    if agent_sock.is_some() {
        let mut client = AgentClient::connect_env()
            .await
            .with_context(|| format!("cannot log in to {who}: cannot reach the ssh-agent"))?;
        in_agent = client
            .request_identities()
            .await
            .with_context(|| format!("cannot log in to {who}: the ssh-agent does not answer"))?
            .into_iter()
            .filter_map(|i| match i {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                _ => None,
            })
            .collect();
        agent = Some(client);
    }
    let mut tried = 0;
    for file in &files {
        let held = file
            .public
            .as_ref()
            .and_then(|p| in_agent.iter().find(|k| k.key_data() == p.key_data()));
        let ok = match (held, &mut agent, &file.private) {
            (Some(key), Some(agent), _) => {
                tried += 1;
                by_agent(handle, &hop.user, key, agent).await?
            }
            (_, _, Some(private)) => {
                tried += 1;
                let hash = rsa_hash(handle, private.algorithm().is_rsa()).await?;
                let key = PrivateKeyWithHashAlg::new(Arc::new(private.clone()), hash);
                let r = handle.authenticate_publickey(&hop.user, key).await;
                matches!(r, Ok(r) if r.success())
            }
            _ => false,
        };
        if ok {
            return Ok(());
        }
    }
    if !hop.keys.only
        && let Some(agent) = &mut agent
    {
        let named: Vec<_> = files.iter().filter_map(|f| f.public.as_ref()).collect();
        for key in in_agent
            .iter()
            .filter(|k| !named.iter().any(|n| n.key_data() == k.key_data()))
        {
            tried += 1;
            if by_agent(handle, &hop.user, key, agent).await? {
                return Ok(());
            }
        }
    }
    if tried > 0 {
        bail!("cannot log in to {who}: permission denied for all {tried} key(s) tried");
    }
    if let Some(f) = files.iter().find(|f| f.public.is_none()) {
        bail!(
            "cannot log in to {who}: cannot read the key {}",
            f.path.display()
        );
    }
    if hop.keys.only && !files.is_empty() {
        bail!(
            "cannot log in to {who}: IdentitiesOnly: the key {} is not in the ssh-agent and has a passphrase",
            files[0].path.display()
        );
    }
    if agent.is_none() {
        bail!(
            "cannot log in to {who}: no ssh-agent (SSH_AUTH_SOCK is not set); start one and add your key with ssh-add"
        );
    }
    bail!("cannot log in to {who}: the ssh-agent holds no keys (add one with ssh-add)")
}

async fn by_agent(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    key: &PublicKey,
    agent: &mut AgentClient<tokio::net::UnixStream>,
) -> anyhow::Result<bool> {
    let hash = rsa_hash(handle, key.algorithm().is_rsa()).await?;
    let r = handle
        .authenticate_publickey_with(user, key.clone(), hash, agent)
        .await;
    Ok(matches!(r, Ok(r) if r.success()))
}

async fn rsa_hash(
    handle: &Handle<HostKeyCheck>,
    is_rsa: bool,
) -> anyhow::Result<Option<russh::keys::HashAlg>> {
    Ok(if is_rsa {
        handle.best_supported_rsa_hash().await?.flatten()
    } else {
        None
    })
}

/// Prefers the host-key algorithms known_hosts already holds for this host, so that a host
/// recorded with only an RSA key is not reported unknown because ed25519 was negotiated.
fn preferred_for(host: &str, port: u16, options: &SshOptions) -> russh::Preferred {
    let mut preferred = russh::Preferred::default();
    let known: Vec<_> = known_hosts::known_host_keys_path(host, port, &options.known_hosts)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, k)| k.algorithm())
        .collect();
    if known.is_empty() {
        return preferred;
    }
    let mut keys: Vec<_> = preferred
        .key
        .iter()
        .filter(|a| known.contains(a))
        .cloned()
        .collect();
    if known.iter().any(|a| a.clone().is_rsa()) {
        for a in preferred.key.iter().filter(|a| (*a).clone().is_rsa()) {
            if !keys.contains(a) {
                keys.push(a.clone());
            }
        }
    }
    let rest: Vec<_> = preferred
        .key
        .iter()
        .filter(|a| !keys.contains(a))
        .cloned()
        .collect();
    keys.extend(rest);
    preferred.key = keys.into();
    preferred
}

fn lost(e: russh::Error) -> RemoteError {
    RemoteError(format!("ssh connection lost: {}", describe(&e)))
}

fn ends_with(data: &[u8], marker: &str) -> bool {
    data.ends_with(marker.as_bytes())
}

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}

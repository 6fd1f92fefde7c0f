//! SSH with russh: one connection per run, root login with keys from ssh-agent, strict
//! host-key checking against known_hosts, at most 4 channels in flight.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use facts::{ExecOutput, LineSplitter, RemoteError};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PublicKeyOrCertificate, known_hosts};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use super::lock::HEARTBEAT_SECS;
use super::{Counter, Held, HeldStart, LockLost};

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
    slots: Semaphore,
    count: Counter,
    lock_lost: LockLost,
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
    pub async fn connect(
        user: &str,
        host: &str,
        port: u16,
        options: &SshOptions,
    ) -> anyhow::Result<Ssh> {
        let who = if port == 22 {
            format!("{user}@{host}")
        } else {
            format!("{user}@{host}:{port}")
        };
        let verdict = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            host: host.to_string(),
            port,
            options: options.clone(),
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            nodelay: true,
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            preferred: preferred_for(host, port, options),
            ..client::Config::default()
        });
        let connecting = client::connect(config, (host, port), handler);
        let handle = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Err(_) => bail!(
                "cannot connect to {who}: no answer within {} s",
                options.connect_timeout.as_secs()
            ),
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let v = verdict.lock().unwrap().clone();
                return Err(match v {
                    Some(Verdict::Changed(at)) => anyhow!(
                        "host key of {host} has CHANGED (known key at {at}): refusing to connect; if the server was reinstalled, remove that line"
                    ),
                    Some(Verdict::Unknown(fp)) => anyhow!(
                        "host key of {host} is not known ({fp}) in {}: check it, then rerun with --accept-new-host-key",
                        options.known_hosts.display()
                    ),
                    Some(Verdict::Failed(why)) => anyhow!("cannot connect to {who}: {why}"),
                    _ => anyhow!("cannot connect to {who}: {}", describe(&e)),
                });
            }
        };
        let mut ssh = Ssh {
            handle,
            slots: Semaphore::new(MAX_CHANNELS),
            count: Counter::default(),
            lock_lost: LockLost::default(),
        };
        ssh.login(user, &who).await?;
        Ok(ssh)
    }

    async fn login(&mut self, user: &str, who: &str) -> anyhow::Result<()> {
        if std::env::var_os("SSH_AUTH_SOCK").is_none() {
            bail!(
                "cannot log in to {who}: no ssh-agent (SSH_AUTH_SOCK is not set); start one and add your key with ssh-add"
            );
        }
        let mut agent = AgentClient::connect_env()
            .await
            .with_context(|| format!("cannot log in to {who}: cannot reach the ssh-agent"))?;
        let identities = agent
            .request_identities()
            .await
            .with_context(|| format!("cannot log in to {who}: the ssh-agent does not answer"))?;
        if identities.is_empty() {
            bail!("cannot log in to {who}: the ssh-agent holds no keys (add one with ssh-add)");
        }
        for identity in &identities {
            let AgentIdentity::PublicKey { key, .. } = identity else {
                continue;
            };
            let hash = if key.algorithm().is_rsa() {
                self.handle.best_supported_rsa_hash().await?.flatten()
            } else {
                None
            };
            let result = self
                .handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await;
            if matches!(result, Ok(r) if r.success()) {
                return Ok(());
            }
        }
        bail!(
            "cannot log in to {who}: permission denied for all {} key(s) in the ssh-agent",
            identities.len()
        )
    }

    pub fn exec_count(&self) -> usize {
        self.count.get()
    }

    pub fn uploaded_bytes(&self) -> usize {
        self.count.stdin_bytes()
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
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| RemoteError(e.to_string()))?;
        self.lock_lost.check()?;
        self.count.bump(stdin.len());
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
        self.count.bump(0);
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
                        let lock_lost = self.lock_lost.clone();
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
    }
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

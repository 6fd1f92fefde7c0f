//! A stream of encrypted messages through submission (465) from several concurrent
//! clients, recording what became of each one by its Message-ID.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chatmail_deploy::probe::account::Account;
use chatmail_deploy::probe::imap::Imap;
use chatmail_deploy::probe::openpgp::{Key, encrypted_message};
use chatmail_deploy::probe::smtp::{Sent, Smtp};
use chatmail_deploy::probe::tls::{Connector, TlsStream};

/// What the client saw for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The final 250.
    Accepted,
    /// A refusal with this code at some step of the transaction.
    Refused(u16),
    /// The connection broke before a final reply: the client cannot know.
    Dropped,
}

/// An account with its key: a sender and, for the next sender, the recipient.
pub struct User {
    pub account: Account,
    pub key: Key,
}

impl User {
    /// A fresh account, created on the relay by its first IMAP login.
    pub async fn create(connector: &Connector, addr: &str, account: Account) -> User {
        let mut imap = Imap::connect_tls(connector, addr, 993).await.unwrap();
        let response = imap
            .login(&account.address, &account.password)
            .await
            .unwrap();
        assert!(response.is_ok(), "login: {}", response.summary());
        imap.logout().await;
        let key = Key::generate(&account.address).unwrap();
        User { account, key }
    }
}

/// Run by [`run`] until `stop` is set and at least `min` messages were sent.
pub struct Stream {
    pub stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicUsize>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One client per user; user i sends to user i+1. Returns (Message-ID, outcome) of every
/// message that was started.
pub async fn run(
    stream: &Stream,
    connector: Connector,
    addr: String,
    users: Arc<Vec<User>>,
    min: usize,
) -> Vec<(String, Outcome)> {
    let mut tasks = Vec::new();
    for i in 0..users.len() {
        let (connector, addr, users) = (connector.clone(), addr.clone(), users.clone());
        let (stop, sent) = (stream.stop.clone(), stream.sent.clone());
        tasks.push(tokio::spawn(async move {
            let from = &users[i];
            let to = &users[(i + 1) % users.len()];
            let mut records = Vec::new();
            let mut session: Option<Smtp<TlsStream>> = None;
            while !(stop.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) >= min) {
                let smtp = match session.take() {
                    Some(s) => s,
                    None => match login(&connector, &addr, &from.account).await {
                        Some(s) => s,
                        None => {
                            // relay mid-restart: try again shortly, no message was started
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let message = encrypted_message(
                    &from.key,
                    &[(to.account.address.as_str(), to.key.public())],
                    "restart stream",
                    "hello during a restart",
                )
                .unwrap();
                let id = message_id(&message);
                let mut smtp = smtp;
                sent.fetch_add(1, Ordering::SeqCst);
                let outcome = match smtp
                    .send_mail(&from.account.address, &[&to.account.address], &message)
                    .await
                {
                    Ok(Sent::Accepted(_)) => Outcome::Accepted,
                    Ok(Sent::Refused(_, reply)) => {
                        eprintln!("refused: {reply}");
                        Outcome::Refused(reply.code)
                    }
                    Err(e) => {
                        eprintln!("dropped: {e:#}");
                        records.push((id, Outcome::Dropped));
                        continue;
                    }
                };
                records.push((id, outcome));
                // a refused transaction may have left the session unusable (421 etc.)
                if outcome == Outcome::Accepted {
                    session = Some(smtp);
                } else {
                    smtp.quit().await;
                }
            }
            if let Some(s) = session {
                s.quit().await;
            }
            records
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn login(connector: &Connector, addr: &str, account: &Account) -> Option<Smtp<TlsStream>> {
    let mut smtp = Smtp::connect_tls(connector, addr, 465).await.ok()?;
    let reply = smtp
        .auth_plain(&account.address, &account.password)
        .await
        .ok()?;
    (reply.code == 235).then_some(smtp)
}

/// The `<...>` of the Message-ID header.
fn message_id(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .expect("a Message-ID header");
    line["message-id:".len()..].trim().to_string()
}

/// The counts a run is judged by.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub accepted: usize,
    pub refused: BTreeMap<u16, usize>,
    pub dropped: usize,
    /// Accepted messages found in a mailbox (once or more).
    pub stored: usize,
    /// Accepted, but in no mailbox.
    pub lost: usize,
    /// Messages stored more than once.
    pub duplicated: usize,
    /// Their Message-IDs, to look them up in the host's logs.
    pub duplicated_ids: Vec<String>,
    /// Stored although the client got no 250: a retry would duplicate them.
    pub stored_unaccepted: usize,
}

impl Tally {
    /// `stored` counts each Message-ID found in the maildirs.
    pub fn new(records: &[(String, Outcome)], stored: &BTreeMap<String, usize>) -> Tally {
        let mut t = Tally {
            sent: records.len(),
            ..Tally::default()
        };
        for (id, outcome) in records {
            let copies = stored.get(id).copied().unwrap_or(0);
            match outcome {
                Outcome::Accepted => {
                    t.accepted += 1;
                    if copies == 0 {
                        t.lost += 1;
                    } else {
                        t.stored += 1;
                    }
                }
                Outcome::Refused(code) => *t.refused.entry(*code).or_default() += 1,
                Outcome::Dropped => t.dropped += 1,
            }
            if *outcome != Outcome::Accepted && copies > 0 {
                t.stored_unaccepted += 1;
            }
            if copies > 1 {
                t.duplicated += 1;
                t.duplicated_ids.push(id.clone());
            }
        }
        t
    }

    pub fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, accepted {}, refused {} {:?}, dropped {}, stored {}, lost {}, duplicated {}, stored without 250 {}",
            self.sent,
            self.accepted,
            self.refused_total(),
            self.refused,
            self.dropped,
            self.stored,
            self.lost,
            self.duplicated,
            self.stored_unaccepted
        )?;
        if !self.duplicated_ids.is_empty() {
            write!(f, " (duplicated: {})", self.duplicated_ids.join(" "))?;
        }
        Ok(())
    }
}

/// IMAP logins of fresh accounts (each one a passdb lookup in doveauth, a userdb lookup
/// and a last-login update) from `clients` concurrent loops until `stop`: (logged in,
/// failed).
pub async fn logins(
    stream: &Stream,
    connector: Connector,
    addr: String,
    rules: chatmail_deploy::probe::account::Rules,
    clients: usize,
) -> (usize, usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (connector, addr, rules) = (connector.clone(), addr.clone(), rules.clone());
        let (stop, done) = (stream.stop.clone(), stream.sent.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let account = Account::fresh(&rules);
                let result = async {
                    let mut imap = Imap::connect_tls(&connector, &addr, 993).await?;
                    let response = imap.login(&account.address, &account.password).await?;
                    imap.logout().await;
                    anyhow::Ok(response)
                }
                .await;
                match result {
                    Ok(r) if r.is_ok() => ok += 1,
                    Ok(r) => {
                        eprintln!("login refused: {}", r.summary());
                        failed += 1;
                    }
                    Err(e) => {
                        eprintln!("login failed: {e:#}");
                        failed += 1;
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            (ok, failed)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        total = (total.0 + ok, total.1 + failed);
    }
    total
}

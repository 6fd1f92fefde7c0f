//! Message round trips: one fresh account sends encrypted messages at a steady pace, another
//! fresh account (on the same or a second relay) waits for them with IMAP IDLE; each
//! message's time runs from the start of its SMTP transaction to the moment the recipient's
//! IDLE reports it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::sync::mpsc;

use super::accounts::host_of;
use super::stats::Summary;
use crate::probe::account::{Account, Rules};
use crate::probe::imap::Imap;
use crate::probe::openpgp::{Key, encrypted_message};
use crate::probe::smtp::{Sent, Smtp};
use crate::probe::tls::{Connector, TlsStream};

/// Who sends to whom.
pub struct Case {
    pub name: String,
    pub from: Rules,
    pub to: Rules,
}

/// How the messages are paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub count: usize,
    /// Between the starts of two sends: below the relay's per-minute limit.
    pub interval: Duration,
    /// How long to wait for stragglers after the last send.
    pub linger: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub case: String,
    pub from: String,
    pub to: String,
    pub sent: usize,
    pub received: usize,
    /// Accepted by the relay but never seen by the recipient.
    pub lost: usize,
    /// Refused when sent (the first refusal's reply, if any).
    pub refused: usize,
    pub first_refusal: Option<String>,
    #[serde(flatten)]
    pub latency: Summary,
}

/// The longest single IDLE before checking whether waiting should end.
const IDLE_SPAN: Duration = Duration::from_secs(60);

enum Event {
    Sending(String, Instant),
    Refused(String),
    Done,
}

pub async fn measure(
    connector: &Connector,
    case: &Case,
    pace: Pace,
    mut progress: impl FnMut(),
) -> anyhow::Result<RoundTrips> {
    let sender = Account::fresh(&case.from);
    let recipient = Account::fresh(&case.to);
    let (sender_key, recipient_key) = (
        Key::generate(&sender.address)?,
        Key::generate(&recipient.address)?,
    );

    let to_host = host_of(&case.to.mail_domain);
    let mut imap = Imap::connect_tls(connector, &to_host, 993)
        .await
        .with_context(|| format!("IMAP to {to_host}"))?;
    let login = imap.login(&recipient.address, &recipient.password).await?;
    if !login.is_ok() {
        bail!(
            "login of {} refused: {}",
            recipient.address,
            login.summary()
        );
    }
    let inbox = imap.select("INBOX").await?;

    let from_host = host_of(&case.from.mail_domain);
    let mut smtp = Smtp::connect_tls(connector, &from_host, 465)
        .await
        .with_context(|| format!("SMTP to {from_host}"))?;
    let auth = smtp.auth_plain(&sender.address, &sender.password).await?;
    if auth.code != 235 {
        bail!("SMTP login of {} refused: {auth}", sender.address);
    }

    let (events, inbox_events) = mpsc::unbounded_channel();
    let expected = Expected {
        pending: HashMap::new(),
        outstanding: pace.count,
        deadline: None,
        linger: pace.linger,
    };
    let receiver = tokio::spawn(receive(
        imap,
        inbox.exists,
        inbox.uid_next,
        inbox_events,
        expected,
    ));

    let started = tokio::time::Instant::now();
    let mut refused = 0;
    let mut first_refusal = None;
    for i in 0..pace.count {
        tokio::time::sleep_until(started + pace.interval * i as u32).await;
        let message = encrypted_message(
            &sender_key,
            &[(&recipient.address, recipient_key.public())],
            &format!("bench {i}"),
            &format!("round trip {i} of {}", pace.count),
        )?;
        let id = message_id(&message).context("the message has no Message-ID")?;
        let _ = events.send(Event::Sending(id.clone(), Instant::now()));
        let sent = smtp
            .send_mail(&sender.address, &[&recipient.address], &message)
            .await?;
        if let Sent::Refused(_, reply) = &sent {
            refused += 1;
            first_refusal.get_or_insert_with(|| reply.to_string());
            let _ = events.send(Event::Refused(id));
        }
        progress();
    }
    let _ = events.send(Event::Done);
    smtp.quit().await;
    let times = receiver.await.context("receiver task")??;
    let received = times.len();
    Ok(RoundTrips {
        case: case.name.clone(),
        from: case.from.mail_domain.clone(),
        to: case.to.mail_domain.clone(),
        sent: pace.count,
        received,
        lost: pace.count - refused - received,
        refused,
        first_refusal,
        latency: Summary::of(&times),
    })
}

/// Waits for the messages announced on `events`; returns the round-trip time of each one
/// that arrived, once all did or `linger` after the last send.
async fn receive(
    mut imap: Imap<TlsStream>,
    mut exists: u32,
    mut uid_next: u32,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut expected: Expected,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    // every message either arrives or is refused; only losses make this wait for the deadline
    while expected.outstanding > 0 {
        expected.take(&mut events);
        if expected.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // stay in IDLE as clients do: idle_until starts with a NOOP, which makes the server
        // look for new mail at once, so leaving IDLE often would measure polling instead
        let wait = expected
            .deadline
            .map_or(IDLE_SPAN, |d| d.saturating_duration_since(Instant::now()))
            .min(IDLE_SPAN);
        let count = imap.idle_until(exists + 1, wait).await?;
        let arrived = imap.exists_grew_at.unwrap_or_else(Instant::now);
        if count <= exists {
            continue;
        }
        exists = count;
        // `N:*` also matches the last message when N is past it: filter by UID
        for (uid, body) in imap.uid_fetch_bodies(&format!("{uid_next}:*")).await? {
            if uid < uid_next {
                continue;
            }
            uid_next = uid + 1;
            // the announcement may still be queued when the message is already there
            expected.take(&mut events);
            if let Some(sent) = message_id(&body).and_then(|id| expected.pending.remove(&id)) {
                times.push(arrived.duration_since(sent));
                expected.outstanding -= 1;
            }
        }
    }
    imap.logout().await;
    Ok(times)
}

/// The messages on their way and when waiting for them ends.
struct Expected {
    /// Message-ID -> when its sending started.
    pending: HashMap<String, Instant>,
    /// Messages neither arrived nor refused yet.
    outstanding: usize,
    deadline: Option<Instant>,
    linger: Duration,
}

impl Expected {
    fn take(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) {
        while let Ok(event) = events.try_recv() {
            match event {
                Event::Sending(id, at) => {
                    self.pending.insert(id, at);
                }
                Event::Refused(id) => {
                    self.pending.remove(&id);
                    self.outstanding -= 1;
                }
                Event::Done => self.deadline = Some(Instant::now() + self.linger),
            }
        }
    }
}

/// The Message-ID header's value (angle brackets included), from the header section.
fn message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next()?;
    header.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_from_the_header_only() {
        let m =
            b"From: <a@b>\r\nmessage-id:  <x1@b> \r\nSubject: s\r\n\r\nMessage-ID: <body@b>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<x1@b>"));
        assert_eq!(
            message_id(b"From: <a@b>\r\n\r\nMessage-ID: <y@b>\r\n"),
            None
        );
    }
}

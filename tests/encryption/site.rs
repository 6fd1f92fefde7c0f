//! The relay under test and the ways mail reaches it: one self-signed relay on a test host
//! (deployed once per test binary), accounts on it, the four entry paths (587, 465, 25,
//! /mxdeliv) and reading (then deleting) what a mailbox stores.

use std::sync::OnceLock;
use std::time::Duration;

use chatmail_deploy::probe::account::{Account, Rules};
use chatmail_deploy::probe::imap::Imap;
use chatmail_deploy::probe::smtp::{Sent, Smtp};
use chatmail_deploy::probe::tls::{Connector, TlsStream};

use crate::common::relay::Relay;

pub const HOST: &str = "relay-enc";
pub const DOMAIN: &str = "_enc.test";
/// This machine on the test network: incoming mail comes from here, so an IP-literal
/// `From:` domain naming it is the only cleartext sender the relay may take unsigned.
pub const PEER: &str = "10.77.0.1";

pub struct Site {
    pub relay: Relay,
    pub rules: Rules,
}

/// The relay, deployed on first use; later tests of the same binary share it. A rerun
/// reuses a host left running (TESTHOST_KEEP) and the deploy then changes nothing.
pub fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let relay = Relay::new(HOST, DOMAIN);
        // the property test sends thousands of messages per minute from one account
        relay
            .append_ini("max_user_send_per_minute = 1000000\nmax_user_send_burst_size = 1000000\n");
        let run = relay.deploy(&[]);
        assert_eq!(run.code, 0, "deploy failed:\n{}", run.stderr);
        let ini = std::fs::read_to_string(&relay.ini).unwrap();
        let config = chatmaild::Config::parse(&ini, "chatmail.ini").unwrap();
        Site {
            rules: Rules::from_config(&config),
            relay,
        }
    })
}

/// The entry paths of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Submission,
    Submissions,
    Mx,
    MxDeliv,
}

impl Path {
    pub const ALL: [Path; 4] = [Path::Submission, Path::Submissions, Path::Mx, Path::MxDeliv];
    pub const INCOMING: [Path; 2] = [Path::Mx, Path::MxDeliv];

    pub fn name(self) -> &'static str {
        match self {
            Path::Submission => "587",
            Path::Submissions => "465",
            Path::Mx => "25",
            Path::MxDeliv => "/mxdeliv",
        }
    }

    pub fn outgoing(self) -> bool {
        matches!(self, Path::Submission | Path::Submissions)
    }
}

/// The relay's answer to one message: the SMTP reply (for /mxdeliv, the reply line in the
/// HTTP body). filtermail answers a bare `250 OK`, so stored copies are found by a token
/// in the message, not by a queue ID.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: u16,
    pub text: String,
}

pub fn connector() -> Connector {
    Connector::new(true, Duration::from_secs(20)).unwrap()
}

/// A new account on the relay, created by its first IMAP login.
pub async fn new_account(site: &Site) -> Account {
    let account = Account::fresh(&site.rules);
    let mut imap = Imap::connect_tls(&connector(), &site.relay.host.addr, 993)
        .await
        .unwrap();
    let r = imap
        .login(&account.address, &account.password)
        .await
        .unwrap();
    assert!(r.is_ok(), "account creation: {}", r.summary());
    imap.logout().await;
    account
}

/// An account without the marker file: it takes cleartext mail.
pub async fn opt_out_account(site: &Site) -> Account {
    let account = new_account(site).await;
    site.relay.host.sh(&format!(
        "rm /home/vmail/mail/{DOMAIN}/{}/enforceE2EEincoming",
        account.address
    ));
    account
}

/// One session on a path: SMTP authenticated for submission, anonymous from this machine
/// for port 25; an HTTPS client for /mxdeliv.
pub enum Session {
    Tls(Box<Smtp<TlsStream>>),
    Http(reqwest::Client),
}

pub async fn session(site: &Site, path: Path, sender: Option<&Account>) -> Session {
    let addr = &site.relay.host.addr;
    let c = connector();
    match path {
        Path::Submission | Path::Submissions => {
            let mut smtp = if path == Path::Submission {
                Smtp::connect_starttls(&c, addr, 587).await.unwrap()
            } else {
                Smtp::connect_tls(&c, addr, 465).await.unwrap()
            };
            let a = sender.expect("submission needs an account");
            let r = smtp.auth_plain(&a.address, &a.password).await.unwrap();
            assert_eq!(r.code, 235, "AUTH: {r}");
            Session::Tls(Box::new(smtp))
        }
        // the relay's port 25 demands STARTTLS before MAIL
        Path::Mx => Session::Tls(Box::new(
            Smtp::connect_starttls(&c, addr, 25).await.unwrap(),
        )),
        Path::MxDeliv => Session::Http(
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        ),
    }
}

impl Session {
    /// Sends one message; errors (broken connection) are outcomes with code 0, so a crash
    /// of the relay shows up in the case table instead of aborting the test.
    pub async fn send(&mut self, mail_from: &str, rcpt: &[&str], message: &[u8]) -> Outcome {
        let sent = match self {
            Session::Tls(s) => s.send_mail(mail_from, rcpt, message).await,
            Session::Http(client) => return mxdeliv(client, mail_from, rcpt, message).await,
        };
        match sent {
            Ok(Sent::Accepted(r)) | Ok(Sent::Refused(_, r)) => Outcome {
                code: r.code,
                text: r.to_string(),
            },
            Err(e) => Outcome {
                code: 0,
                text: format!("connection error: {e:#}"),
            },
        }
    }

    pub async fn quit(self) {
        match self {
            Session::Tls(s) => s.quit().await,
            Session::Http(_) => {}
        }
    }

    pub fn is_broken(outcome: &Outcome) -> bool {
        outcome.code == 0
    }
}

async fn mxdeliv(
    client: &reqwest::Client,
    mail_from: &str,
    rcpt: &[&str],
    message: &[u8],
) -> Outcome {
    let url = format!("https://{}/mxdeliv", site().relay.host.addr);
    let mut request = client.post(url).header("X-MAIL-FROM", mail_from);
    for r in rcpt {
        request = request.header("X-MAIL-TO", *r);
    }
    let response = request.body(message.to_vec()).send().await;
    let text = match response {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => {
            return Outcome {
                code: 0,
                text: format!("HTTP error: {e:#}"),
            };
        }
    };
    let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    Outcome {
        code,
        text: text.trim_end().to_string(),
    }
}

/// A logged-in IMAP session on an account's INBOX.
pub struct Mailbox {
    imap: Imap<TlsStream>,
}

impl Mailbox {
    pub async fn open(site: &Site, account: &Account) -> Mailbox {
        let mut imap = Imap::connect_tls(&connector(), &site.relay.host.addr, 993)
            .await
            .unwrap();
        let r = imap
            .login(&account.address, &account.password)
            .await
            .unwrap();
        assert!(r.is_ok(), "IMAP login: {}", r.summary());
        imap.select("INBOX").await.unwrap();
        Mailbox { imap }
    }

    /// Waits until the INBOX holds at least `count` messages (or `timeout` passes), then
    /// a moment more so that stray extra deliveries are seen too; returns every stored
    /// message and deletes them (STORE \Deleted + EXPUNGE), so the quota never fills.
    pub async fn drain(&mut self, count: u32, timeout: Duration) -> Vec<Vec<u8>> {
        self.imap.idle_until(count, timeout).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.imap.command("NOOP").await.unwrap();
        if self.imap.exists == 0 {
            return Vec::new();
        }
        let bodies = self.imap.uid_fetch_bodies("1:*").await.unwrap();
        // only what was read: mail arriving meanwhile gets higher UIDs and stays
        let Some(max) = bodies.iter().map(|(uid, _)| *uid).max() else {
            return Vec::new();
        };
        let r = self
            .imap
            .command(&format!("UID STORE 1:{max} +FLAGS.SILENT (\\Deleted)"))
            .await
            .unwrap();
        assert!(r.is_ok(), "STORE: {}", r.summary());
        let r = self.imap.command("EXPUNGE").await.unwrap();
        assert!(r.is_ok(), "EXPUNGE: {}", r.summary());
        // the client tracks EXISTS but not EXPUNGE: select again for the true count (mail
        // that arrived meanwhile must still count as new)
        self.imap.exists = 0;
        self.imap.select("INBOX").await.unwrap();
        bodies.into_iter().map(|(_, b)| b).collect()
    }

    pub async fn close(self) {
        self.imap.logout().await;
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

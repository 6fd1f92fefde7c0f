//! The protocol checks: TLS on every port, accounts, mail submission and its refusals,
//! METADATA.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rand::Rng;
use tokio::io::AsyncReadExt;

use super::Relay;
use super::report::{Report, Slot};
use crate::probe::account::Account;
use crate::probe::imap::{Imap, Response};
use crate::probe::openpgp::{self, Key};
use crate::probe::smtp::{Sent, Smtp};
use crate::probe::tls::{TlsStream, negotiated_alpn};

/// Register and start the checks that talk IMAP and SMTP.
pub fn start(relay: &Arc<Relay>, report: &mut Report) {
    tls_checks(relay, report);
    account_checks(relay, report);
}

/// (check name, port, what to expect): implicit TLS, then STARTTLS ports.
fn tls_checks(relay: &Arc<Relay>, report: &mut Report) {
    for (name, port) in [("TLS 993 (IMAPS)", 993), ("TLS 465 (SMTPS)", 465)] {
        let slot = report.check(name);
        let relay = relay.clone();
        tokio::spawn(async move {
            let result = async {
                let stream = relay.connector.tls(&relay.host, port).await?;
                greeting_after_tls(stream, port == 993, &relay).await
            };
            slot.result(result.await);
        });
    }
    let slot = report.check("TLS 443 (HTTPS)");
    let r = relay.clone();
    tokio::spawn(async move {
        let result = async {
            let connector = r.connector.with_alpn(&["http/1.1"]);
            let stream = connector.tls(&r.host, 443).await?;
            Ok(protocol_version(&stream))
        };
        slot.result(result.await);
    });
    // nginx passes 443 through by ALPN: the greeting shows which server answered
    for (name, alpn, imap) in [
        ("ALPN imap on 443 reaches IMAP", "imap", true),
        ("ALPN smtp on 443 reaches SMTP", "smtp", false),
    ] {
        let slot = report.check(name);
        let r = relay.clone();
        tokio::spawn(async move {
            let result = async {
                let connector = r.connector.with_alpn(&[alpn]);
                let stream = connector.tls(&r.host, 443).await?;
                let picked = negotiated_alpn(&stream);
                let detail = greeting_after_tls(stream, imap, &r).await?;
                Ok(match picked {
                    Some(p) => format!("{detail}, ALPN {p}"),
                    None => detail,
                })
            };
            slot.result(result.await);
        });
    }
    for (name, port) in [
        ("STARTTLS 143 (IMAP)", 143),
        ("STARTTLS 587 (submission)", 587),
        ("STARTTLS 25 (SMTP)", 25),
    ] {
        let slot = report.check(name);
        let r = relay.clone();
        tokio::spawn(async move {
            let result = async {
                if port == 143 {
                    let imap = Imap::connect_starttls(&r.connector, &r.host, port).await?;
                    imap.logout().await;
                } else {
                    let smtp = Smtp::connect_starttls(&r.connector, &r.host, port).await?;
                    smtp.quit().await;
                }
                Ok(String::new())
            };
            slot.result(result.await);
        });
    }
}

fn protocol_version(stream: &TlsStream) -> String {
    stream
        .get_ref()
        .1
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .replace('_', ".")
        .replace("TLSv1.", "TLS 1.")
}

/// Read the server's first line over TLS: `* OK` for IMAP, `220` for SMTP.
async fn greeting_after_tls(
    mut stream: TlsStream,
    imap: bool,
    relay: &Relay,
) -> anyhow::Result<String> {
    let version = protocol_version(&stream);
    let mut buf = vec![0; 512];
    let n = tokio::time::timeout(relay.timeout, stream.read(&mut buf))
        .await
        .map_err(|_| anyhow!("no greeting within {:?}", relay.timeout))??;
    let greeting = String::from_utf8_lossy(&buf[..n]);
    let expected = if imap { "* OK" } else { "220" };
    if !greeting.starts_with(expected) {
        bail!(
            "expected {} greeting, got {:?}",
            if imap { "an IMAP" } else { "an SMTP" },
            greeting.lines().next().unwrap_or("")
        );
    }
    Ok(version)
}

/// Slots of the account checks, in print order.
struct AccountSlots {
    first_login: Slot,
    second_login: Slot,
    wrong_password: Slot,
    capabilities: Slot,
    smtp_login: Slot,
    encrypted: Slot,
    cleartext: Slot,
    forged_from: Slot,
    other_sender: Slot,
    device_token: Slot,
    server_metadata: Slot,
}

fn account_checks(relay: &Arc<Relay>, report: &mut Report) {
    let slots = AccountSlots {
        first_login: report.check("first login creates an account"),
        second_login: report.check("second login"),
        wrong_password: report.check("wrong password refused"),
        capabilities: report.check("IMAP capabilities XCHATMAIL XDELTAPUSH"),
        smtp_login: report.check("SMTP login"),
        encrypted: report.check("encrypted message delivered and decrypted"),
        cleartext: report.check("cleartext message refused"),
        forged_from: report.check("forged From refused"),
        other_sender: report.check("MAIL FROM of another user refused"),
        device_token: report.check("METADATA device token"),
        server_metadata: report.check("METADATA server attributes"),
    };
    tokio::spawn(accounts(relay.clone(), slots));
}

async fn login(relay: &Relay, account: &Account) -> anyhow::Result<(Imap<TlsStream>, Response)> {
    let mut imap = Imap::connect_tls(&relay.connector, &relay.host, 993).await?;
    let response = imap.login(&account.address, &account.password).await?;
    Ok((imap, response))
}

/// Log in and require success.
async fn logged_in(relay: &Relay, account: &Account) -> anyhow::Result<Imap<TlsStream>> {
    let (imap, response) = login(relay, account).await?;
    if !response.is_ok() {
        bail!("LOGIN {} refused: {}", account.address, response.summary());
    }
    Ok(imap)
}

async fn accounts(relay: Arc<Relay>, s: AccountSlots) {
    let alice = Account::fresh(&relay.rules);
    let bob = Account::fresh(&relay.rules);
    let (a, b) = tokio::join!(logged_in(&relay, &alice), logged_in(&relay, &bob));
    let mut imap_a = match a {
        Ok(imap) => {
            s.first_login.ok(alice.address.clone());
            imap
        }
        Err(e) => return s.first_login.error(&e),
    };

    let second = async {
        let imap = logged_in(&relay, &alice).await?;
        imap.logout().await;
        Ok(String::new())
    };
    let wrong = async {
        let wrong = Account {
            password: format!("{}x", alice.password),
            ..alice.clone()
        };
        let (imap, response) = login(&relay, &wrong).await?;
        imap.logout().await;
        if response.is_ok() {
            bail!("LOGIN with a wrong password was accepted");
        }
        Ok(response.summary())
    };
    let caps = async {
        let caps = imap_a.capability().await?;
        let missing: Vec<_> = ["XCHATMAIL", "XDELTAPUSH"]
            .into_iter()
            .filter(|c| !caps.iter().any(|have| have.eq_ignore_ascii_case(c)))
            .collect();
        if !missing.is_empty() {
            bail!("missing {}", missing.join(", "));
        }
        metadata(&mut imap_a).await
    };
    let (second, wrong, caps) = tokio::join!(second, wrong, caps);
    s.second_login.result(second);
    s.wrong_password.result(wrong);
    match caps {
        Ok((token, server)) => {
            s.capabilities.ok("");
            s.device_token.result(token);
            s.server_metadata.result(server);
        }
        Err(e) => s.capabilities.error(&e),
    }
    imap_a.logout().await;

    let mut imap_b = match b {
        Ok(imap) => imap,
        Err(e) => return s.encrypted.error(&e.context("second account")),
    };
    let (keys, smtp) = tokio::join!(
        async { tokio::task::spawn_blocking(keys(alice.clone(), bob.clone())).await? },
        submission(&relay, &alice, 465)
    );
    let keys = match keys {
        Ok(keys) => keys,
        Err(e) => return s.encrypted.error(&e),
    };
    let mut smtp = match smtp {
        Ok(smtp) => {
            s.smtp_login.ok("");
            smtp
        }
        Err(e) => return s.smtp_login.error(&e),
    };
    let encrypted = async {
        let result = exchange(&relay, &mut smtp, &mut imap_b, &alice, &bob, &keys).await;
        smtp.quit().await;
        imap_b.logout().await;
        result
    };
    let refusals = refusals(
        &relay,
        &alice,
        &bob,
        &keys,
        s.cleartext,
        s.forged_from,
        s.other_sender,
    );
    let (encrypted, ()) = tokio::join!(encrypted, refusals);
    s.encrypted.result(encrypted);
}

/// The device token round trip, then the server attributes clients ask for.
async fn metadata(
    imap: &mut Imap<TlsStream>,
) -> anyhow::Result<(anyhow::Result<String>, anyhow::Result<String>)> {
    const TOKEN_KEY: &str = "/private/devicetoken";
    let token = format!("chatmail-deploy-test-{}", rand::thread_rng().r#gen::<u32>());
    let token_check = async {
        let response = imap.set_metadata("INBOX", TOKEN_KEY, &token).await?;
        if !response.is_ok() {
            bail!("SETMETADATA refused: {}", response.summary());
        }
        let value = imap.get_metadata("INBOX", TOKEN_KEY).await?;
        let value = String::from_utf8_lossy(&value.unwrap_or_default()).into_owned();
        if !value.split_whitespace().any(|t| t == token) {
            bail!("GETMETADATA answered {value:?}, not the token just set");
        }
        Ok(String::new())
    }
    .await;
    let mut server = Vec::new();
    let mut server_check = Ok(());
    for name in ["maxsmtprecipients", "irohrelay"] {
        let key = format!("/shared/vendor/deltachat/{name}");
        match imap.get_metadata("", &key).await {
            Ok(Some(v)) => server.push(format!("{name} {}", String::from_utf8_lossy(&v))),
            Ok(None) if name == "irohrelay" => {}
            Ok(None) => server_check = Err(anyhow!("no value for {key}")),
            Err(e) => server_check = Err(e),
        }
    }
    let server_check = server_check.map(|()| server.join(", "));
    Ok((token_check, server_check))
}

/// Both accounts' keys (generated off the async threads).
fn keys(alice: Account, bob: Account) -> impl FnOnce() -> anyhow::Result<(Key, Key)> {
    move || Ok((Key::generate(&alice.address)?, Key::generate(&bob.address)?))
}

/// An authenticated submission session: 465 implicit TLS, 587 STARTTLS.
async fn submission(
    relay: &Relay,
    account: &Account,
    port: u16,
) -> anyhow::Result<Smtp<TlsStream>> {
    let mut smtp = if port == 465 {
        Smtp::connect_tls(&relay.connector, &relay.host, port).await?
    } else {
        Smtp::connect_starttls(&relay.connector, &relay.host, port).await?
    };
    let reply = smtp.auth_plain(&account.address, &account.password).await?;
    if reply.code != 235 {
        bail!("AUTH PLAIN on {port}: {reply}");
    }
    Ok(smtp)
}

/// Alice sends bob an encrypted message; bob waits for it with IDLE and decrypts it.
async fn exchange(
    relay: &Relay,
    smtp: &mut Smtp<TlsStream>,
    imap_b: &mut Imap<TlsStream>,
    alice: &Account,
    bob: &Account,
    (key_a, key_b): &(Key, Key),
) -> anyhow::Result<String> {
    let mailbox = imap_b.select("INBOX").await?;
    let secret = format!("probe {}", rand::thread_rng().r#gen::<u64>());
    let message = openpgp::encrypted_message(
        key_a,
        &[(&bob.address, key_b.public())],
        "chatmail-deploy test",
        &secret,
    )?;
    let started = std::time::Instant::now();
    match smtp
        .send_mail(&alice.address, &[&bob.address], &message)
        .await?
    {
        Sent::Accepted(_) => {}
        Sent::Refused(step, reply) => bail!("refused at {step:?}: {reply}"),
    }
    // other checks may deliver to bob too (when the relay wrongly accepts what they send):
    // look at every new message until ours is there
    let deadline = tokio::time::Instant::now() + relay.timeout;
    let (mut seen, mut uid_next, mut others) = (mailbox.exists, mailbox.uid_next.max(1), 0);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let exists = imap_b.idle_until(seen + 1, left).await?;
        if exists <= seen {
            bail!(
                "not in the recipient's INBOX after {:?} ({others} other new message(s))",
                relay.timeout
            );
        }
        seen = exists;
        let elapsed = started.elapsed();
        for (uid, body) in imap_b.uid_fetch_bodies(&format!("{uid_next}:*")).await? {
            if uid < uid_next {
                continue;
            }
            uid_next = uid + 1;
            if let Ok(clear) = openpgp::decrypt_message(&body, key_b)
                && String::from_utf8_lossy(&clear).contains(&secret)
            {
                return Ok(format!("in {:.1} s", elapsed.as_secs_f64()));
            }
            others += 1;
        }
    }
}

/// What the relay must refuse, on a 587 session of alice's: cleartext, a From header
/// that is not the login, a MAIL FROM of another user.
async fn refusals(
    relay: &Relay,
    alice: &Account,
    bob: &Account,
    keys: &(Key, Key),
    cleartext: Slot,
    forged: Slot,
    other: Slot,
) {
    let mut smtp = match submission(relay, alice, 587).await {
        Ok(smtp) => smtp,
        Err(e) => {
            let e = e.context("logging in on 587");
            forged.error(&e);
            other.error(&e);
            return cleartext.error(&e);
        }
    };
    let plain = format!(
        "From: <{a}>\r\nTo: <{b}>\r\nSubject: cleartext\r\nMessage-ID: <{n}@{d}>\r\n\r\nnot encrypted\r\n",
        a = alice.address,
        b = bob.address,
        n = rand::thread_rng().r#gen::<u64>(),
        d = relay.mail_domain,
    );
    cleartext.result(
        expect_refusal(
            &mut smtp,
            &alice.address,
            &bob.address,
            plain.as_bytes(),
            523,
        )
        .await,
    );

    // encrypted, so only the From rule can refuse it
    let forged_result = async {
        let (key_a, key_b) = keys;
        let mut message =
            openpgp::encrypted_message(key_a, &[(&bob.address, key_b.public())], "forged", "x")?;
        let from = format!("From: <{}>\r\n", alice.address);
        let forged_from = format!("From: <{}>\r\n", bob.address);
        message = String::from_utf8(message)?
            .replacen(&from, &forged_from, 1)
            .into_bytes();
        expect_refusal(&mut smtp, &alice.address, &bob.address, &message, 500).await
    };
    forged.result(forged_result.await);

    let other_result = async {
        let (key_a, key_b) = keys;
        let message =
            openpgp::encrypted_message(key_b, &[(&alice.address, key_a.public())], "other", "x")?;
        expect_refusal(&mut smtp, &bob.address, &alice.address, &message, 553).await
    };
    other.result(other_result.await);
    smtp.quit().await;
}

/// Send and require a refusal; the detail is the refusal as the relay gave it.
async fn expect_refusal(
    smtp: &mut Smtp<TlsStream>,
    from: &str,
    to: &str,
    message: &[u8],
    code: u16,
) -> anyhow::Result<String> {
    let sent = smtp
        .send_mail(from, &[to], message)
        .await
        .context("sending")?;
    match sent {
        Sent::Accepted(reply) => bail!("accepted ({reply}), expected {code}"),
        Sent::Refused(_, reply) if reply.code == code => Ok(reply.to_string()),
        Sent::Refused(step, reply) => bail!("refused at {step:?} with {reply}, expected {code}"),
    }
}

//! Runs a family of regression cases through the relay and judges each one by its reply
//! AND by what the recipient's mailbox stores; all wrong cases are reported together.

use std::collections::BTreeMap;
use std::time::Duration;

use chatmail_deploy::probe::account::Account;

use super::oracle::{self, Reader};
use super::site::{Mailbox, Outcome, Path, Session, Site, session};

/// What the fixed relay must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 250, stored, the oracle passes and the sent body is stored unchanged.
    Accept,
    /// A 5xx reply and nothing stored.
    Refuse,
    /// Either; if accepted it must be stored and pass the oracle.
    Either,
}

pub struct Case {
    pub name: String,
    pub path: Path,
    /// Envelope sender (the authenticated account on submission paths).
    pub mail_from: String,
    pub rcpt: String,
    /// Whose mailbox it lands in, if accepted.
    pub mailbox: usize,
    /// Unique text in the message (its Message-ID) to find the stored copy.
    pub token: String,
    pub message: Vec<u8>,
    pub expect: Expect,
}

/// The recipients' accounts and whether they enforce encryption.
pub struct Recipients {
    pub accounts: Vec<(Account, bool)>,
}

/// Sends every case (one session per path), drains the mailboxes and returns the table
/// of wrong cases (empty = all right). `sender` authenticates submission.
pub async fn run(site: &Site, sender: &Account, rcpts: &Recipients, cases: &[Case]) -> Vec<String> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(cases.len());
    let mut sessions: BTreeMap<&str, Session> = BTreeMap::new();
    for case in cases {
        let key = case.path.name();
        if !sessions.contains_key(key) {
            sessions.insert(key, session(site, case.path, Some(sender)).await);
        }
        let s = sessions.get_mut(key).unwrap();
        let outcome = s.send(&case.mail_from, &[&case.rcpt], &case.message).await;
        if Session::is_broken(&outcome) {
            // a new session for the next case; this one is recorded as broken
            sessions.remove(key);
        }
        outcomes.push(outcome);
    }
    for (_, s) in sessions {
        s.quit().await;
    }

    // every accepted case lands in its mailbox; wait for that many, then read them all
    let mut stored: Vec<Vec<Vec<u8>>> = Vec::new();
    for (i, (account, _)) in rcpts.accounts.iter().enumerate() {
        let accepted = cases
            .iter()
            .zip(&outcomes)
            .filter(|(c, o)| c.mailbox == i && o.code == 250)
            .count() as u32;
        let mut mb = Mailbox::open(site, account).await;
        stored.push(mb.drain(accepted, Duration::from_secs(30)).await);
        mb.close().await;
    }

    let mut wrong = Vec::new();
    let mut matched = vec![vec![false; 0]; stored.len()];
    for (i, s) in stored.iter().enumerate() {
        matched[i] = vec![false; s.len()];
    }
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let (account, enforcing) = &rcpts.accounts[case.mailbox];
        let copies: Vec<usize> = stored[case.mailbox]
            .iter()
            .enumerate()
            .filter(|(_, m)| super::site::find(m, case.token.as_bytes()).is_some())
            .map(|(j, _)| j)
            .collect();
        for &j in &copies {
            matched[case.mailbox][j] = true;
        }
        let reader = Reader {
            address: &account.address,
            enforcing: *enforcing,
        };
        let verdicts: Vec<Result<oracle::Allowed, String>> = copies
            .iter()
            .map(|&j| oracle::judge(&stored[case.mailbox][j], &reader))
            .collect();
        let mut problems = Vec::new();
        let accepted = outcome.code == 250;
        match case.expect {
            Expect::Refuse if accepted || outcome.code / 100 != 5 => {
                problems.push("expected 5xx".to_string())
            }
            Expect::Accept if !accepted => problems.push("expected 250".to_string()),
            _ => {}
        }
        if accepted && copies.is_empty() {
            problems.push("accepted but not stored".into());
        }
        if !accepted && !copies.is_empty() {
            problems.push("refused but stored".into());
        }
        if case.expect == Expect::Accept
            && let Some(&j) = copies.first()
        {
            let body = body_of(&case.message);
            if super::site::find(&stored[case.mailbox][j], body).is_none() {
                problems.push("stored body differs from the sent one".into());
            }
        }
        for (v, &j) in verdicts.iter().zip(&copies) {
            if let Err(why) = v {
                problems.push(format!(
                    "ORACLE VIOLATION: {why}\n----- stored -----\n{}\n------------------",
                    oracle::excerpt(&stored[case.mailbox][j], 1500)
                ));
            }
        }
        let line = format!(
            "{:<9} {:<48} expect {:<6} got {} stored {}",
            case.path.name(),
            case.name,
            format!("{:?}", case.expect),
            short(&outcome.text),
            copies.len()
        );
        if problems.is_empty() {
            eprintln!("ok    {line}");
        } else {
            eprintln!("WRONG {line}: {}", problems.join("; "));
            wrong.push(format!("{line}: {}", problems.join("; ")));
        }
    }
    // anything else in an enforcing mailbox must pass the oracle too
    for (i, s) in stored.iter().enumerate() {
        let (account, enforcing) = &rcpts.accounts[i];
        for (j, m) in s.iter().enumerate() {
            if matched[i][j] {
                continue;
            }
            let reader = Reader {
                address: &account.address,
                enforcing: *enforcing,
            };
            if let Err(why) = oracle::judge(m, &reader) {
                wrong.push(format!(
                    "unmatched stored message in {}: {why}\n{}",
                    account.address,
                    oracle::excerpt(m, 1500)
                ));
            }
        }
    }
    wrong
}

/// What follows the header block of a sent message (the part Postfix must not change).
pub fn body_of(message: &[u8]) -> &[u8] {
    match super::site::find(message, b"\r\n\r\n") {
        Some(i) => &message[i + 4..],
        None => message,
    }
}

fn short(reply: &str) -> String {
    let one = reply.lines().next().unwrap_or("");
    one.chars().take(60).collect()
}

/// Fails the test with the table of every wrong case.
pub fn assert_all_right(family: &str, total: usize, wrong: &[String]) {
    eprintln!(
        "{family}: {} of {total} cases right",
        total - wrong.len().min(total)
    );
    assert!(
        wrong.is_empty(),
        "{family}: {} wrong case(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

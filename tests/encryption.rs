//! Encryption enforcement through a real relay on a test host: the relay's promise (users
//! send only PGP/MIME; an enforcing user's mailbox holds only PGP/MIME or a documented
//! cleartext exception) checked on every entry path (587, 465, 25, /mxdeliv) by the reply
//! AND by what the recipient reads back over IMAP, parsed as Delta Chat core parses it.
//!
//! Needs CHATMAIL_TESTHOSTS=1 (root). One relay (host `relay-enc`) serves all tests of this
//! file. The property test's size: CHATMAIL_ENC_MUTATIONS (default 300), seed:
//! CHATMAIL_ENC_SEED.

mod common;
mod encryption {
    pub mod cases;
    pub mod dkim;
    pub mod mutate;
    pub mod oracle;
    pub mod runner;
    pub mod site;
}

use chatmail_deploy::probe::account::Account;
use chatmail_deploy::probe::openpgp::{Key, encrypted_message};
use encryption::cases::{self, head};
use encryption::runner::{Case, Expect, Recipients, assert_all_right, run};
use encryption::site::{DOMAIN, PEER, Path, Site, new_account, opt_out_account, site};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The sender (enforcing, authenticates submission), an enforcing recipient and an
/// opt-out recipient, all new.
struct People {
    sender: Account,
    rcpts: Recipients,
}

const ENFORCING: usize = 0;
const OPT_OUT: usize = 1;

async fn people(site: &Site) -> People {
    let sender = new_account(site).await;
    let enforcing = new_account(site).await;
    let opt_out = opt_out_account(site).await;
    People {
        sender,
        rcpts: Recipients {
            accounts: vec![(enforcing, true), (opt_out, false)],
        },
    }
}

/// The incoming sender: an IP literal naming this machine (DKIM is skipped for it).
fn peer_sender() -> String {
    format!("enc@[{PEER}]")
}

/// The headers a relay's OpenDKIM signs (a subset that matters here).
const DKIM_HEADERS: &[&str] = &["From", "To", "Subject", "Date", "Message-ID"];

/// The DKIM key of the domain that sends on /mxdeliv like a peer relay would; every
/// message from it is signed when built.
fn relay_signer() -> &'static encryption::dkim::Signer {
    static SIGNER: std::sync::OnceLock<encryption::dkim::Signer> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| encryption::dkim::Signer::publish("peer-relay.test"))
}

struct Builder<'a> {
    family: &'static str,
    people: &'a People,
    cases: Vec<Case>,
}

impl<'a> Builder<'a> {
    fn new(family: &'static str, people: &'a People) -> Builder<'a> {
        Builder {
            family,
            people,
            cases: Vec::new(),
        }
    }

    fn token(&self) -> String {
        format!(
            "{}-{}-{}",
            self.family,
            self.cases.len(),
            std::process::id()
        )
    }

    /// The envelope sender and `From:` for a path: the account on submission, this
    /// machine's IP literal on 25, a DKIM-signing domain on /mxdeliv (as another relay
    /// posts there; filtermail sees nginx, not this machine, as the peer of /mxdeliv).
    fn from(&self, path: Path) -> String {
        match path {
            Path::Submission | Path::Submissions => self.people.sender.address.clone(),
            Path::Mx => peer_sender(),
            Path::MxDeliv => format!("enc@{}", relay_signer().domain),
        }
    }

    fn rcpt(&self, mailbox: usize) -> String {
        self.people.rcpts.accounts[mailbox].0.address.clone()
    }

    /// A case to the enforcing user whose message `make(head)` builds.
    fn add(&mut self, name: &str, path: Path, expect: Expect, make: impl Fn(&str) -> Vec<u8>) {
        let from = self.from(path);
        self.add_full(name, path, &from, &from, ENFORCING, None, expect, make);
    }

    #[allow(clippy::too_many_arguments)]
    fn add_full(
        &mut self,
        name: &str,
        path: Path,
        mail_from: &str,
        header_from: &str,
        mailbox: usize,
        rcpt: Option<String>,
        expect: Expect,
        make: impl Fn(&str) -> Vec<u8>,
    ) {
        let token = self.token();
        let to = self.rcpt(mailbox);
        let mut message = make(&head(header_from, &to, &token));
        if header_from.ends_with(&format!("@{}", relay_signer().domain)) {
            message = relay_signer().sign(&message, DKIM_HEADERS, false);
        }
        self.cases.push(Case {
            name: name.to_string(),
            path,
            mail_from: mail_from.to_string(),
            rcpt: rcpt.unwrap_or(to),
            mailbox,
            token,
            message,
            expect,
        });
    }

    fn run(self, site: &Site, rt: &tokio::runtime::Runtime) {
        let wrong = rt.block_on(run(
            site,
            &self.people.sender,
            &self.people.rcpts,
            &self.cases,
        ));
        assert_all_right(self.family, self.cases.len(), &wrong);
    }
}

fn setup(test: &str) -> Option<(&'static Site, tokio::runtime::Runtime)> {
    if !common::enabled(test) {
        return None;
    }
    Some((site(), runtime()))
}

/// Hole 1: other spellings of an enforcing user's address must not carry cleartext past
/// the marker-file check; an opt-out user's may.
#[test]
fn recipient_spellings_do_not_bypass_enforcement() {
    let Some((site, rt)) = setup("recipient_spellings") else {
        return;
    };
    let people = rt.block_on(people(site));
    let mut b = Builder::new("spelling", &people);
    for (mailbox, expect) in [(ENFORCING, Expect::Refuse), (OPT_OUT, Expect::Either)] {
        let addr = people.rcpts.accounts[mailbox].0.address.clone();
        let user = addr.split('@').next().unwrap().to_string();
        let spellings = [
            ("user+tag@domain", format!("{user}+tag@{DOMAIN}")),
            ("\"user\"@domain", format!("\"{user}\"@{DOMAIN}")),
            ("user%domain@domain", format!("{user}%{DOMAIN}@{DOMAIN}")),
            ("domain!user@domain", format!("{DOMAIN}!{user}@{DOMAIN}")),
            ("user@domain.", format!("{user}@{DOMAIN}.")),
            ("USER@DOMAIN", addr.to_uppercase()),
        ];
        let who = if mailbox == ENFORCING {
            "enforcing"
        } else {
            "opt-out"
        };
        for path in Path::INCOMING {
            for (name, spelled) in &spellings {
                let from = b.from(path);
                b.add_full(
                    &format!("cleartext to {who} {name}"),
                    path,
                    &from,
                    &from,
                    mailbox,
                    Some(spelled.clone()),
                    expect,
                    cases::cleartext,
                );
            }
        }
    }
    // the plain address: refused for the enforcing user, delivered to the opt-out one
    for path in Path::INCOMING {
        let from = b.from(path);
        b.add_full(
            "cleartext to enforcing",
            path,
            &from,
            &from,
            ENFORCING,
            None,
            Expect::Refuse,
            cases::cleartext,
        );
        b.add_full(
            "cleartext to opt-out",
            path,
            &from,
            &from,
            OPT_OUT,
            None,
            Expect::Accept,
            cases::cleartext,
        );
    }
    b.run(site, &rt);
}

/// Hole 2: a line Postfix does not take as a header, before `Content-Type:
/// multipart/encrypted`, makes the stored message text/plain with the attacker's text;
/// so does a Content-Type longer than Postfix keeps. Also through the Secure-Join
/// exception.
#[test]
fn lines_postfix_does_not_take_as_headers_are_refused() {
    let Some((site, rt)) = setup("bad_header_lines") else {
        return;
    };
    let people = rt.block_on(people(site));
    let mut b = Builder::new("badline", &people);
    let preamble = format!("{}\r\n", cases::ATTACK);
    for path in Path::ALL {
        for (name, line) in cases::bad_lines() {
            b.add(
                &format!("pgp/mime after {name}"),
                path,
                Expect::Refuse,
                |h| cases::pgp(h, "xyzzy", &line, &preamble),
            );
            b.add(
                &format!("secure-join after {name}"),
                path,
                Expect::Refuse,
                |h| cases::securejoin(h, &line),
            );
        }
        b.add(
            "content-type > 102400 bytes",
            path,
            Expect::Refuse,
            cases::long_content_type,
        );
        // controls: the same messages without the bad line pass
        b.add("pgp/mime with a preamble", path, Expect::Accept, |h| {
            cases::pgp(h, "xyzzy", b"", &preamble)
        });
    }
    b.run(site, &rt);
}

/// Hole 3: parameters that filtermail and the client read differently.
#[test]
fn ambiguous_content_type_parameters_are_refused() {
    let Some((site, rt)) = setup("ambiguous_content_type") else {
        return;
    };
    let people = rt.block_on(people(site));
    let mut b = Builder::new("ctparam", &people);
    for path in Path::ALL {
        b.add(
            "two boundary= parameters",
            path,
            Expect::Refuse,
            cases::two_boundaries,
        );
        b.add(
            "encoded word '; boundary=OTHER'",
            path,
            Expect::Refuse,
            cases::encoded_word_boundary,
        );
    }
    b.run(site, &rt);
}

/// Hole 4 and the DKIM half of hole 5: who may send unsigned or partly signed mail.
#[test]
fn incoming_sender_authentication() {
    let Some((site, rt)) = setup("incoming_sender_authentication") else {
        return;
    };
    let people = rt.block_on(people(site));
    let signer = encryption::dkim::Signer::publish("dkim-enc.test");
    let signed_from = format!("enc@{}", signer.domain);
    let mut b = Builder::new("sender", &people);
    let pgp = |h: &str| cases::pgp(h, "xyzzy", b"", "");
    const ALL: &[&str] = DKIM_HEADERS;
    const NO_FROM: &[&str] = &["To", "Subject", "Date", "Message-ID"];
    for path in Path::INCOMING {
        let s = &signer;
        let sign = |h: &str, headers: &[&str], l: bool| s.sign(&pgp(h), headers, l);
        b.add_full(
            "DKIM over From",
            path,
            &signed_from,
            &signed_from,
            ENFORCING,
            None,
            Expect::Accept,
            |h| sign(h, ALL, false),
        );
        b.add_full(
            "DKIM h= without From",
            path,
            &signed_from,
            &signed_from,
            ENFORCING,
            None,
            Expect::Refuse,
            |h| sign(h, NO_FROM, false),
        );
        b.add_full(
            "DKIM with l=, unmodified",
            path,
            &signed_from,
            &signed_from,
            ENFORCING,
            None,
            Expect::Accept,
            |h| sign(h, ALL, true),
        );
        b.add_full(
            "unsigned",
            path,
            &signed_from,
            &signed_from,
            ENFORCING,
            None,
            Expect::Refuse,
            pgp,
        );
        let other = "x@[10.9.9.9]";
        b.add_full(
            "From x@[10.9.9.9] (not the peer)",
            path,
            other,
            other,
            ENFORCING,
            None,
            Expect::Refuse,
            pgp,
        );
        // on /mxdeliv filtermail's peer is nginx, so whether an IP literal naming this
        // machine counts as the peer there is the fix's choice; on 25 it must
        let quoted = format!("\"x\"@[{PEER}]");
        b.add_full(
            "From \"x\"@[peer] (quoted local part)",
            path,
            &quoted,
            &quoted,
            ENFORCING,
            None,
            if path == Path::Mx {
                Expect::Accept
            } else {
                Expect::Either
            },
            pgp,
        );
    }
    b.run(site, &rt);
}

/// Hole 5 and the baseline: real encrypted mail and PGP/MIME with boundaries that are
/// substrings of the armor lines, on every path, accepted and stored unchanged.
#[test]
fn valid_encrypted_mail_is_accepted_and_stored_intact() {
    let Some((site, rt)) = setup("valid_encrypted_mail") else {
        return;
    };
    let people = rt.block_on(people(site));
    let sender_key = Key::generate(&people.sender.address).unwrap();
    let rcpt_addr = people.rcpts.accounts[ENFORCING].0.address.clone();
    let rcpt_key = Key::generate(&rcpt_addr).unwrap();
    let mut b = Builder::new("valid", &people);
    for path in Path::ALL {
        for boundary in ["B", "E", "BEG", "xyzzy"] {
            b.add(
                &format!("pgp/mime boundary {boundary}"),
                path,
                Expect::Accept,
                |h| cases::pgp(h, boundary, b"", ""),
            );
        }
        b.add("secure-join vc-request", path, Expect::Accept, |h| {
            cases::securejoin(h, b"")
        });
        let from = b.from(path);
        let key = if path.outgoing() {
            sender_key.clone()
        } else {
            Key::generate(&from).unwrap()
        };
        let real =
            encrypted_message(&key, &[(&rcpt_addr, rcpt_key.public())], "hi", "hello").unwrap();
        // every captured Delta Chat message, re-addressed
        for (i, fixture) in encryption::mutate::fixtures().iter().enumerate() {
            let token = b.token();
            let mut m = encryption::mutate::readdressed(
                fixture,
                &from,
                &rcpt_addr,
                &format!("{token}@enc.test"),
            );
            if path == Path::MxDeliv {
                m = relay_signer().sign(&m, DKIM_HEADERS, false);
            }
            b.cases.push(Case {
                name: format!("Delta Chat dc-{:02}.eml", i + 1),
                path,
                mail_from: from.clone(),
                rcpt: rcpt_addr.clone(),
                mailbox: ENFORCING,
                token,
                message: m,
                expect: Expect::Accept,
            });
        }
        // the probe's message as `chatmail-deploy test` sends it, its Message-ID replaced
        // by the case token
        let token = b.token();
        let mut real = replace_message_id(&real, &token);
        if path == Path::MxDeliv {
            real = relay_signer().sign(&real, DKIM_HEADERS, false);
        }
        b.cases.push(Case {
            name: "probe::openpgp::encrypted_message".into(),
            path,
            mail_from: from,
            rcpt: rcpt_addr.clone(),
            mailbox: ENFORCING,
            token,
            message: real,
            expect: Expect::Accept,
        });
    }
    b.run(site, &rt);
}

fn replace_message_id(message: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let start = text.find("Message-ID: <").unwrap() + "Message-ID: <".len();
    let end = start + text[start..].find('@').unwrap();
    format!("{}{token}{}", &text[..start], &text[end..]).into_bytes()
}

/// Mutations of real Delta Chat messages over concurrent connections on 587 and 25:
/// whatever the relay stores for an enforcing user must pass the oracle, everything it
/// accepts must be stored, and refusals are 5xx.
#[test]
fn mutated_delta_chat_messages_never_store_cleartext() {
    let Some((site, rt)) = setup("mutations") else {
        return;
    };
    let people = rt.block_on(people(site));
    let summary = rt.block_on(encryption::mutate::campaign(
        site,
        &people.sender,
        &people.rcpts.accounts[ENFORCING].0,
    ));
    eprintln!("{}", summary.line());
    assert!(summary.sent > 0);
    assert!(
        summary.problems.is_empty(),
        "{}\n{} problem(s):\n{}",
        summary.line(),
        summary.problems.len(),
        first_lines(&summary.problems, 100)
    );
}

/// The first `n` entries, and how many more there are (a 100,000-message run can find
/// thousands).
fn first_lines(all: &[String], n: usize) -> String {
    let mut text = all[..all.len().min(n)].join("\n");
    if all.len() > n {
        text.push_str(&format!("\n... and {} more", all.len() - n));
    }
    text
}

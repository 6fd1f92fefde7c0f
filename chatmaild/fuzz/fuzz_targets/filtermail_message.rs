//! Arbitrary bytes as a message: every filtermail rule must return a verdict, never panic.
#![no_main]

use chatmaild::filtermail::incoming::{self, Mailboxes};
use chatmaild::filtermail::smtp::Envelope;
use chatmaild::filtermail::{Direction, data, openpgp, outgoing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let envelope = Envelope {
        mail_from: Some("alice123@chat.example.org".into()),
        rcpt_to: vec!["bob456789@remote.example".into()],
        data: Vec::new(),
    };
    let boxes = Mailboxes {
        dir: "/nonexistent-filtermail-fuzz".into(),
        domain: "remote.example".into(),
    };
    let _ = data::is_valid(input);
    let message = data::unstuff(input);
    let _ = outgoing::check(&envelope, &message);
    let _ = incoming::check(&envelope, &message, &boxes);
    let _ = openpgp::check_packets(input);
    let _ = openpgp::check_armored(input, Direction::Incoming);
    let _ = openpgp::check_armored(input, Direction::Outgoing);
});

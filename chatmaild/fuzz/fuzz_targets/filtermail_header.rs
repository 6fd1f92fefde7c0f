//! Arbitrary bytes as a message header: for every header filtermail's header check
//! accepts, mailparse (what the rules and Delta Chat read) and an independent model of
//! Postfix's cleanup (`postfix_header_model.rs`) must see the same fields and the same
//! body start; the check must accept exactly what the model's strict rules accept. The
//! content rules must return a verdict, never panic.
#![no_main]

mod postfix_header_model;

use chatmaild::filtermail::incoming::{self, Mailboxes};
use chatmaild::filtermail::outgoing;
use chatmaild::filtermail::smtp::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Err(divergence) = postfix_header_model::compare(input) {
        panic!("{divergence}\ninput: {:?}", String::from_utf8_lossy(input));
    }
    let envelope = Envelope {
        mail_from: Some("alice123@chat.example.org".into()),
        rcpt_to: vec!["bob456789@remote.example".into()],
        data: Vec::new(),
    };
    let boxes = Mailboxes {
        dir: "/nonexistent-filtermail-fuzz".into(),
    };
    let _ = outgoing::check(&envelope, input);
    let _ = incoming::check(&envelope, input, &boxes);
});

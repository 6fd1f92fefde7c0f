//! Arbitrary bytes as an SMTP client's side of a session: the server must answer and end
//! without panicking or buffering beyond its limits.
#![no_main]

use chatmaild::filtermail::reply::Reply;
use chatmaild::filtermail::smtp::server::{Limits, session};
use chatmaild::filtermail::smtp::{Envelope, Handler};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Accept;

impl Handler for Accept {
    async fn data(&self, envelope: Envelope) -> Reply {
        assert!(envelope.data.len() <= 4096);
        Reply::ok()
    }
}

fuzz_target!(|input: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client);
        let limits = Limits::new(4096);
        let serve = session(server, &Accept, &limits);
        // Write and read concurrently: replies can outgrow the pipe buffer.
        let write = async {
            wr.write_all(input).await.ok();
            wr.shutdown().await.ok();
        };
        let read = async {
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.ok();
            out
        };
        let (_, _, out) = tokio::join!(serve, write, read);
        assert!(out.starts_with(b"220 filtermail SMTP\r\n"));
    });
});

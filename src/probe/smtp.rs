//! A minimal SMTP submission client: enough to log in, send one message and see exactly
//! which reply a relay gave when it refused something.
//!
//! Replies are read with filtermail's own reply reader, so the relay and its checker parse
//! SMTP the same way.

use anyhow::{Context, bail};
use chatmaild::filtermail::data::stuff;
use chatmaild::filtermail::smtp::client::read_reply_lines;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use chatmaild::filtermail::reply::Reply;

use super::tls::{Connector, TlsStream};

/// The step of a mail transaction a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MailFrom,
    RcptTo,
    /// The `DATA` command itself, answered with 354.
    Data,
    /// The message after the final dot.
    Message,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The final 250 after the message.
    Accepted(Reply),
    /// The first non-positive reply and the step it answered; the transaction was reset,
    /// so the connection can send again.
    Refused(Step, Reply),
}

impl Sent {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Sent::Accepted(_))
    }

    pub fn reply(&self) -> &Reply {
        match self {
            Sent::Accepted(r) | Sent::Refused(_, r) => r,
        }
    }
}

/// One SMTP session over any stream (plain before STARTTLS, TLS after).
pub struct Smtp<S> {
    stream: BufReader<S>,
    /// EHLO keywords of the last EHLO (first word upper-cased, e.g. `AUTH PLAIN LOGIN`).
    pub extensions: Vec<String>,
}

/// The name we greet with; relays do not check it for authenticated submission.
const HELO_NAME: &str = "chatmail-deploy.invalid";

impl Smtp<TlsStream> {
    /// Implicit TLS (465, or 443 with ALPN `smtp`): greeting and EHLO done.
    pub async fn connect_tls(
        connector: &Connector,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Smtp<TlsStream>> {
        let stream = connector.tls(host, port).await?;
        Smtp::start(stream).await
    }

    /// Plain connection upgraded with STARTTLS (587, 25): greeting, EHLO, STARTTLS and the
    /// second EHLO done.
    pub async fn connect_starttls(
        connector: &Connector,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Smtp<TlsStream>> {
        let tcp = connector.tcp(host, port).await?;
        let mut plain = Smtp::start(tcp).await?;
        let reply = plain.command("STARTTLS").await?;
        if reply.code != 220 {
            bail!("STARTTLS refused: {reply}");
        }
        let tcp = plain.stream.into_inner();
        let tls = connector.upgrade(tcp, host).await?;
        let mut smtp = Smtp {
            stream: BufReader::new(tls),
            extensions: Vec::new(),
        };
        smtp.ehlo().await?;
        Ok(smtp)
    }
}

impl Smtp<TcpStream> {
    /// Whether the server offered STARTTLS in its EHLO.
    pub fn offers_starttls(&self) -> bool {
        self.extensions.iter().any(|e| e == "STARTTLS")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    /// Read the greeting and send EHLO.
    pub async fn start(stream: S) -> anyhow::Result<Smtp<S>> {
        let mut smtp = Smtp {
            stream: BufReader::new(stream),
            extensions: Vec::new(),
        };
        let greeting = smtp.read_reply().await.context("reading the greeting")?;
        if greeting.code != 220 {
            bail!("greeting: {greeting}");
        }
        smtp.ehlo().await?;
        Ok(smtp)
    }

    async fn ehlo(&mut self) -> anyhow::Result<()> {
        self.send_line(&format!("EHLO {HELO_NAME}")).await?;
        let (reply, lines) = read_reply_lines(&mut self.stream).await?;
        if reply.code != 250 {
            bail!("EHLO: {reply}");
        }
        // the first line is the server's name, the rest are keywords
        self.extensions = lines.iter().skip(1).map(|l| keyword(l)).collect();
        Ok(())
    }

    /// Send one command line and read its reply (all lines joined).
    pub async fn command(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.send_line(line).await?;
        self.read_reply().await
    }

    /// AUTH PLAIN; the reply says whether the login worked (235) or not.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> anyhow::Result<Reply> {
        let token = auth_plain_token(user, password);
        self.command(&format!("AUTH PLAIN {token}")).await
    }

    /// One mail transaction. `message` is the raw message with CRLF line ends; it is
    /// dot-stuffed here. A refusal is a normal outcome, not an error: errors are broken
    /// connections and protocol violations.
    pub async fn send_mail(
        &mut self,
        mail_from: &str,
        rcpt_to: &[&str],
        message: &[u8],
    ) -> anyhow::Result<Sent> {
        let reply = self.command(&format!("MAIL FROM:<{mail_from}>")).await?;
        if !reply.is_positive() {
            return self.refused(Step::MailFrom, reply).await;
        }
        for rcpt in rcpt_to {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !reply.is_positive() {
                return self.refused(Step::RcptTo, reply).await;
            }
        }
        let reply = self.command("DATA").await?;
        if reply.code != 354 {
            return self.refused(Step::Data, reply).await;
        }
        let mut data = stuff(message);
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.stream.get_mut().write_all(&data).await?;
        self.stream.get_mut().flush().await?;
        let reply = self.read_reply().await?;
        if reply.code == 250 {
            Ok(Sent::Accepted(reply))
        } else {
            self.refused(Step::Message, reply).await
        }
    }

    async fn refused(&mut self, step: Step, reply: Reply) -> anyhow::Result<Sent> {
        // after a refused DATA the server expects a new transaction; after a refused
        // MAIL/RCPT the half-open one must be dropped
        if step != Step::Message {
            let _ = self.command("RSET").await;
        }
        Ok(Sent::Refused(step, reply))
    }

    /// QUIT, ignoring the answer: the session is over either way.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
        let _ = self.stream.get_mut().shutdown().await;
    }

    async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        if line.contains(['\r', '\n']) {
            bail!("an SMTP command line cannot contain CR or LF");
        }
        let w = self.stream.get_mut();
        w.write_all(line.as_bytes()).await?;
        w.write_all(b"\r\n").await?;
        w.flush().await?;
        Ok(())
    }

    async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        Ok(read_reply_lines(&mut self.stream).await?.0)
    }
}

/// The EHLO keyword line with the keyword upper-cased, parameters kept.
fn keyword(line: &str) -> String {
    match line.split_once(' ') {
        Some((k, rest)) => format!("{} {rest}", k.to_ascii_uppercase()),
        None => line.to_ascii_uppercase(),
    }
}

/// RFC 4616: base64 of `\0user\0password` (empty authorization identity).
pub fn auth_plain_token(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, duplex};

    #[test]
    fn auth_plain_encodes_both_names() {
        assert_eq!(auth_plain_token("a@b", "pw"), "AGFAYgBwdw==");
    }

    #[test]
    fn keywords_are_upper_cased() {
        assert_eq!(keyword("auth PLAIN LOGIN"), "AUTH PLAIN LOGIN");
        assert_eq!(keyword("starttls"), "STARTTLS");
    }

    /// A scripted server: answers each command line with the next canned reply.
    async fn serve(
        server: tokio::io::DuplexStream,
        greeting: &str,
        replies: Vec<&'static str>,
    ) -> Vec<u8> {
        let (rd, mut wr) = tokio::io::split(server);
        let mut rd = BufReader::new(rd);
        wr.write_all(greeting.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut replies = replies.into_iter();
        while let Some(reply) = replies.next() {
            let mut line = Vec::new();
            rd.read_until(b'\n', &mut line).await.unwrap();
            seen.extend_from_slice(&line);
            wr.write_all(reply.as_bytes()).await.unwrap();
            if line == b"DATA\r\n" && reply.starts_with("354") {
                // the message up to the final dot is answered by the next reply
                loop {
                    let mut l = Vec::new();
                    rd.read_until(b'\n', &mut l).await.unwrap();
                    seen.extend_from_slice(&l);
                    if l == b".\r\n" {
                        break;
                    }
                }
                let reply = replies.next().unwrap();
                wr.write_all(reply.as_bytes()).await.unwrap();
            }
        }
        let mut rest = Vec::new();
        let _ = rd.read_to_end(&mut rest).await;
        seen
    }

    #[tokio::test]
    async fn accepted_message_is_dot_stuffed() {
        let (client, server) = duplex(4096);
        let server = tokio::spawn(serve(
            server,
            "220 relay ESMTP\r\n",
            vec![
                "250-relay\r\n250-PIPELINING\r\n250 auth PLAIN\r\n",
                "250 2.1.0 Ok\r\n",
                "250 2.1.5 Ok\r\n",
                "354 End data with <CR><LF>.<CR><LF>\r\n",
                "250 2.0.0 Ok: queued as 1\r\n",
                "221 Bye\r\n",
            ],
        ));
        let mut smtp = Smtp::start(client).await.unwrap();
        assert_eq!(smtp.extensions, ["PIPELINING", "AUTH PLAIN"]);
        let sent = smtp
            .send_mail("a@x", &["b@x"], b"Subject: s\r\n\r\n.hidden\r\nend")
            .await
            .unwrap();
        assert_eq!(
            sent,
            Sent::Accepted(Reply::new(250, "2.0.0 Ok: queued as 1"))
        );
        smtp.quit().await;
        let seen = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(seen.contains("\r\n..hidden\r\nend\r\n.\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn refusal_reports_step_and_resets() {
        let (client, server) = duplex(4096);
        let server = tokio::spawn(serve(
            server,
            "220 relay\r\n",
            vec![
                "250 relay\r\n",
                "250 Ok\r\n",
                "553-5.7.1 <b@x>: Sender address rejected:\r\n553 5.7.1 not owned by user\r\n",
                "250 Ok\r\n",
            ],
        ));
        let mut smtp = Smtp::start(client).await.unwrap();
        let sent = smtp.send_mail("b@x", &["c@x"], b"x\r\n").await.unwrap();
        let Sent::Refused(step, reply) = sent else {
            panic!("{sent:?}")
        };
        assert_eq!(step, Step::RcptTo);
        assert_eq!(reply.code, 553);
        assert_eq!(
            reply.text,
            "5.7.1 <b@x>: Sender address rejected: 5.7.1 not owned by user"
        );
        drop(smtp);
        let seen = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(seen.ends_with("RSET\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn bad_greeting_is_an_error() {
        let (client, mut server) = duplex(1024);
        server.write_all(b"554 go away\r\n").await.unwrap();
        let err = Smtp::start(client).await.err().unwrap();
        assert!(err.to_string().contains("554"), "{err}");
    }
}

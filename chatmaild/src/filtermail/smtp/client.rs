//! SMTP client for re-injecting accepted mail into Postfix.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::filtermail::reply::Reply;

/// Where and how to re-inject.
#[derive(Debug, Clone)]
pub struct Relay {
    /// `host:port`.
    pub addr: String,
    /// Name sent in EHLO.
    pub helo: String,
    pub timeout: Duration,
}

/// A reply line longer than this is treated as a broken peer.
const MAX_REPLY_LINE: u64 = 4096;

impl Relay {
    pub fn new(host: &str, port: u16) -> Relay {
        Relay {
            addr: format!("{host}:{port}"),
            helo: "localhost".into(),
            timeout: Duration::from_secs(120),
        }
    }

    /// Re-inject to an already resolved address (no lookup per message).
    pub fn to(addr: std::net::SocketAddr) -> Relay {
        Relay {
            addr: addr.to_string(),
            ..Relay::new("", 0)
        }
    }

    /// Send one message; `data` must already be dot-stuffed and CRLF-terminated.
    ///
    /// Returns `250 OK` on success, the server's reply if it refused the message, and a
    /// `451` temporary failure for connection problems (so Postfix retries later).
    pub async fn send(&self, mail_from: Option<&str>, rcpt_to: &[String], data: &[u8]) -> Reply {
        match tokio::time::timeout(self.timeout, self.transaction(mail_from, rcpt_to, data)).await {
            Ok(Ok(Ok(()))) => Reply::ok(),
            Ok(Ok(Err(refusal))) => refusal,
            Ok(Err(e)) => Reply::new(
                451,
                format!("Error re-injecting mail to {}: {e}", self.addr),
            ),
            Err(_) => Reply::new(451, format!("Timeout re-injecting mail to {}", self.addr)),
        }
    }

    async fn transaction(
        &self,
        mail_from: Option<&str>,
        rcpt_to: &[String],
        data: &[u8],
    ) -> io::Result<Result<(), Reply>> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);

        let greeting = read_reply(&mut rd).await?;
        if greeting.code != 220 {
            return Ok(Err(greeting));
        }
        let (ehlo, lines) = command(&mut wr, &mut rd, &format!("EHLO {}", self.helo)).await?;
        if ehlo.code != 250 {
            return Ok(Err(ehlo));
        }
        let eight_bit = lines.iter().any(|l| l.eq_ignore_ascii_case("8BITMIME"));
        let mut mail = format!("MAIL FROM:<{}>", mail_from.unwrap_or(""));
        if eight_bit && !data.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let steps = std::iter::once(mail)
            .chain(rcpt_to.iter().map(|r| format!("RCPT TO:<{r}>")))
            .chain(std::iter::once("DATA".to_owned()));
        for step in steps {
            let (reply, _) = command(&mut wr, &mut rd, &step).await?;
            let expected = if step == "DATA" { 354 } else { 250 };
            if reply.code != expected && !(expected == 250 && reply.code == 251) {
                let _ = wr.write_all(b"QUIT\r\n").await;
                return Ok(Err(reply));
            }
        }
        wr.write_all(data).await?;
        wr.write_all(b".\r\n").await?;
        wr.flush().await?;
        let done = read_reply(&mut rd).await?;
        let _ = wr.write_all(b"QUIT\r\n").await;
        if done.code == 250 {
            Ok(Ok(()))
        } else {
            Ok(Err(done))
        }
    }
}

async fn command<W, R>(wr: &mut W, rd: &mut R, line: &str) -> io::Result<(Reply, Vec<String>)>
where
    W: AsyncWriteExt + Unpin,
    R: AsyncBufReadExt + Unpin,
{
    wr.write_all(line.as_bytes()).await?;
    wr.write_all(b"\r\n").await?;
    wr.flush().await?;
    read_reply_lines(rd).await
}

async fn read_reply<R: AsyncBufReadExt + Unpin>(rd: &mut R) -> io::Result<Reply> {
    Ok(read_reply_lines(rd).await?.0)
}

/// Read a possibly multi-line reply; the texts of all lines are joined for the reply and
/// also returned one per line (EHLO keywords).
pub async fn read_reply_lines<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
) -> io::Result<(Reply, Vec<String>)> {
    let mut texts = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = tokio::io::AsyncReadExt::take(&mut *rd, MAX_REPLY_LINE)
            .read_until(b'\n', &mut raw)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad reply line {line:?}"),
                )
            })?;
        let text = line.get(4..).unwrap_or("").to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        texts.push(text);
        if last {
            let joined = texts.join(" ");
            return Ok((Reply::new(code, joined), texts));
        }
    }
}

//! SMTP/LMTP server loop: one task per connection, bounded memory per line and message.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::command::{self, Command};
use super::{Envelope, Handler};
use crate::filtermail::data;
use crate::filtermail::reply::Reply;

/// Command lines longer than this are refused (RFC 5321 allows 512 octets plus extension
/// parameters; Postfix's own limit is 2048).
const MAX_COMMAND_LINE: usize = 4096;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// How long to wait for the next line before dropping the connection.
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn new(max_message_size: usize) -> Limits {
        Limits {
            max_message_size,
            // Postfix's smtpd_recipient_limit default; the relay advertises 1000 to clients.
            max_recipients: 1000,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Accept connections forever, one task each.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, limits: Limits) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Replies are small and latency-bound; Nagle would add delay per command.
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let limits = limits.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, &*handler, &limits).await {
                        log::debug!("connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                log::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// Outcome of reading one line.
struct LineRead {
    /// The line ended with LF (otherwise the peer closed the connection mid-line).
    complete: bool,
    /// More bytes arrived than the caller allowed; only the first ones were kept.
    overflow: bool,
}

/// Read up to and including the next LF, appending at most `cap` bytes to `out` and
/// discarding the rest of the line.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> io::Result<LineRead> {
    let mut kept = 0usize;
    let mut overflow = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(LineRead {
                complete: false,
                overflow,
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let take = chunk.len().min(cap - kept);
        out.extend_from_slice(&chunk[..take]);
        kept += take;
        overflow |= take < chunk.len();
        let consumed = chunk.len();
        reader.consume(consumed);
        if done {
            return Ok(LineRead {
                complete: true,
                overflow,
            });
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))?
}

/// Run one SMTP/LMTP session on an established stream.
pub async fn session<S, H>(stream: S, handler: &H, limits: &Limits) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = BufReader::new(rd);
    wr.write_all(b"220 filtermail SMTP\r\n").await?;
    wr.flush().await?;

    let mut mail_from: Option<Option<String>> = None;
    let mut rcpt_to: Vec<String> = Vec::new();
    let mut line = Vec::with_capacity(256);
    let mut lmtp = false;
    // What XFORWARD said about Postfix's client, for the transaction that follows.
    let mut client: Option<IpAddr> = None;

    loop {
        line.clear();
        let read = with_timeout(
            limits.idle_timeout,
            read_line(&mut reader, &mut line, MAX_COMMAND_LINE),
        )
        .await?;
        if !read.complete {
            return Ok(());
        }
        let reply: String = if read.overflow {
            "500 5.5.2 Error: line too long\r\n".into()
        } else {
            match command::parse(&line) {
                Command::Helo => {
                    client = None;
                    "250-filtermail\r\n250 OK\r\n".into()
                }
                hello @ (Command::Ehlo | Command::Lhlo) => {
                    lmtp = hello == Command::Lhlo;
                    mail_from = None;
                    rcpt_to.clear();
                    client = None;
                    if H::XFORWARD && !lmtp {
                        "250-filtermail\r\n250-8BITMIME\r\n250-XFORWARD ADDR\r\n250 OK\r\n".into()
                    } else {
                        "250-filtermail\r\n250-8BITMIME\r\n250 OK\r\n".into()
                    }
                }
                Command::Xforward(_) if !H::XFORWARD || lmtp => {
                    "500 Command not recognized\r\n".into()
                }
                Command::Xforward(_) if mail_from.is_some() => {
                    "503 5.5.1 Error: MAIL transaction in progress\r\n".into()
                }
                Command::Xforward(Err(())) => {
                    "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n".into()
                }
                Command::Xforward(Ok(addr)) => {
                    if let Some(addr) = addr {
                        client = addr;
                    }
                    Reply::ok().to_line()
                }
                Command::Mail(_) if mail_from.is_some() => {
                    "503 5.5.1 Error: nested MAIL command\r\n".into()
                }
                Command::Mail(Err(())) => "500 Invalid address in MAIL FROM\r\n".into(),
                Command::Mail(Ok(sender)) => match handler.mail_from(sender.as_deref()) {
                    Ok(()) => {
                        mail_from = Some(sender);
                        Reply::ok().to_line()
                    }
                    Err(reply) => reply.to_line(),
                },
                Command::Rcpt(_) if mail_from.is_none() => {
                    "503 5.5.1 Error: need MAIL command\r\n".into()
                }
                Command::Rcpt(Err(())) => "501 5.1.3 Bad recipient address syntax\r\n".into(),
                Command::Rcpt(Ok(_)) if rcpt_to.len() >= limits.max_recipients => {
                    "452 4.5.3 Error: too many recipients\r\n".into()
                }
                Command::Rcpt(Ok(rcpt)) => match handler.rcpt_to(&rcpt) {
                    Ok(()) => {
                        rcpt_to.push(rcpt);
                        Reply::ok().to_line()
                    }
                    Err(reply) => reply.to_line(),
                },
                Command::Data if mail_from.is_none() => {
                    "503 5.5.1 Error: need MAIL command\r\n".into()
                }
                Command::Data if rcpt_to.is_empty() => {
                    "503 5.5.1 Error: need RCPT command\r\n".into()
                }
                Command::Data => {
                    wr.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    wr.flush().await?;
                    let received = receive_data(&mut reader, limits).await?;
                    let envelope = Envelope {
                        mail_from: mail_from.take().flatten(),
                        rcpt_to: std::mem::take(&mut rcpt_to),
                        data: Vec::new(),
                    };
                    let recipients = envelope.rcpt_to.len();
                    // Postfix sends XFORWARD again for every transaction.
                    let client = client.take();
                    let replies = match received {
                        Received::Closed => return Ok(()),
                        Received::TooBig => vec![Reply::message_too_big()],
                        Received::Data(bytes) if !data::is_valid(&bytes) => {
                            vec![Reply::invalid_data()]
                        }
                        Received::Data(bytes) => {
                            let envelope = Envelope {
                                data: bytes,
                                ..envelope
                            };
                            if lmtp {
                                handler.lmtp_data(envelope).await
                            } else {
                                vec![handler.data_from(envelope, client).await]
                            }
                        }
                    };
                    if lmtp {
                        lmtp_lines(replies, recipients)
                    } else {
                        replies.first().map_or_else(local_error, Reply::to_line)
                    }
                }
                Command::Rset => {
                    mail_from = None;
                    rcpt_to.clear();
                    client = None;
                    Reply::ok().to_line()
                }
                Command::Noop => Reply::ok().to_line(),
                Command::Quit => {
                    wr.write_all(b"221 OK\r\n").await?;
                    wr.flush().await?;
                    return Ok(());
                }
                Command::Unknown => "500 Command not recognized\r\n".into(),
            }
        };
        wr.write_all(reply.as_bytes()).await?;
        wr.flush().await?;
    }
}

/// The reply lines after DATA in LMTP mode: exactly one per recipient. A reply that
/// concerns the whole message (refused by the server itself) is repeated; a handler that
/// miscounted gets a temporary failure for the recipients it did not answer, so that
/// Postfix retries them rather than assuming delivery.
fn lmtp_lines(replies: Vec<Reply>, recipients: usize) -> String {
    let replies = match &replies[..] {
        [one] => vec![one.clone(); recipients],
        _ => replies,
    };
    if replies.len() != recipients {
        log::error!(
            "LMTP handler gave {} replies for {recipients} recipients",
            replies.len()
        );
    }
    (0..recipients)
        .map(|i| replies.get(i).map_or_else(local_error, Reply::to_line))
        .collect()
}

fn local_error() -> String {
    Reply::new(451, "Local error").to_line()
}

enum Received {
    Data(Vec<u8>),
    TooBig,
    Closed,
}

/// Collect DATA lines until the lone dot. Past the size limit the rest is read and
/// dropped, so that the client's next command is not mistaken for message text.
async fn receive_data<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
) -> io::Result<Received> {
    let mut data = Vec::new();
    let mut too_big = false;
    let mut scratch = Vec::with_capacity(8);
    loop {
        let (read, line): (LineRead, &[u8]) = if too_big {
            scratch.clear();
            let r = with_timeout(limits.idle_timeout, read_line(reader, &mut scratch, 3)).await?;
            (r, &scratch)
        } else {
            let start = data.len();
            // Room for the terminator even when the message is exactly at the limit.
            let room = (limits.max_message_size + 3).saturating_sub(start).max(3);
            let r = with_timeout(limits.idle_timeout, read_line(reader, &mut data, room)).await?;
            (r, &data[start..])
        };
        if !read.complete {
            return Ok(Received::Closed);
        }
        if !read.overflow && line == b".\r\n" {
            if too_big {
                return Ok(Received::TooBig);
            }
            let len = data.len() - 3;
            data.truncate(len);
            return Ok(Received::Data(data));
        }
        if !too_big && (read.overflow || data.len() > limits.max_message_size) {
            too_big = true;
            data = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmtp_lines_one_per_recipient() {
        let ok = Reply::ok();
        let no = Reply::new(550, "5.1.1 no such user");
        assert_eq!(
            lmtp_lines(vec![ok.clone(), no.clone()], 2),
            "250 OK\r\n550 5.1.1 no such user\r\n"
        );
        assert_eq!(lmtp_lines(vec![no.clone()], 3), no.to_line().repeat(3));
        assert_eq!(
            lmtp_lines(vec![ok.clone(), ok.clone()], 3),
            "250 OK\r\n250 OK\r\n451 Local error\r\n"
        );
        assert_eq!(
            lmtp_lines(vec![ok.clone(), ok, no], 2),
            "250 OK\r\n250 OK\r\n"
        );
    }
}

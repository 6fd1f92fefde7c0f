//! SMTP delivery to a remote MX on port 25 with mandatory STARTTLS: the fallback when a
//! destination does not offer `/mxdeliv`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::filtermail::reply::Reply;
use crate::filtermail::smtp::client::read_reply_lines as read_reply;

/// A reply line longer than this is treated as a broken peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Head start of each address over the next one.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Where one SMTP attempt goes.
pub struct Target<'a> {
    /// MX host name (or IP address text for IP literals): TLS server name and log text.
    pub host: &'a str,
    pub addrs: &'a [IpAddr],
    pub port: u16,
    /// `None`: plain SMTP without STARTTLS.
    pub tls: Option<Arc<ClientConfig>>,
}

/// One message for the attempt.
pub struct Message<'a> {
    pub helo: &'a str,
    pub mail_from: Option<&'a str>,
    pub rcpt_to: &'a [String],
    /// Dot-stuffed, CRLF-terminated, without the final dot line.
    pub data: &'a [u8],
}

/// Why an attempt ended without per-recipient answers.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was handed over (connection, TLS, greeting or EHLO trouble): try the next MX.
    Connect(String),
    /// The transaction had started when the connection broke or timed out.
    Broken(String),
}

/// Deliver one message; on success one reply per recipient, in order.
pub async fn send(
    target: &Target<'_>,
    message: &Message<'_>,
    timeout: Duration,
) -> Result<Vec<Reply>, Failure> {
    let stream = connect(target.addrs, target.port)
        .await
        .map_err(Failure::Connect)?;
    match tokio::time::timeout(timeout, session(stream, target, message)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Broken("timeout".into())),
    }
}

/// Connect to the first address that answers. Attempts start staggered (RFC 8305
/// "happy eyeballs") so that an address family without a working route cannot hold up
/// delivery for the whole connect timeout.
async fn connect(addrs: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut attempts = tokio::task::JoinSet::new();
    for (i, &ip) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(ip, port);
        let delay = ATTEMPT_DELAY * u32::try_from(i).unwrap_or(u32::MAX);
        attempts.spawn(async move {
            tokio::time::sleep(delay).await;
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(format!("{addr}: {e}")),
                Err(_) => Err(format!("{addr}: connect timeout")),
            }
        });
    }
    let mut last = String::from("no address");
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(stream)) => {
                // Dropping the set aborts the other attempts.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

async fn session(
    stream: TcpStream,
    target: &Target<'_>,
    message: &Message<'_>,
) -> Result<Vec<Reply>, Failure> {
    let connect_err = |e: io::Error| Failure::Connect(e.to_string());
    let mut io = BufReader::new(stream);
    let greeting = read_reply(&mut io).await.map_err(connect_err)?.0;
    if greeting.code != 220 {
        return Ok(vec![greeting; message.rcpt_to.len()]);
    }
    let (ehlo, keywords) = command(&mut io, &format!("EHLO {}", message.helo))
        .await
        .map_err(connect_err)?;
    if ehlo.code != 250 {
        return Err(Failure::Connect(format!("EHLO refused: {ehlo}")));
    }
    let Some(tls) = target.tls.clone() else {
        return transaction(&mut io, &keywords, message).await;
    };
    if !has_keyword(&keywords, "STARTTLS") {
        return Err(Failure::Connect("STARTTLS not offered".into()));
    }
    let (reply, _) = command(&mut io, "STARTTLS").await.map_err(connect_err)?;
    if reply.code != 220 {
        return Err(Failure::Connect(format!("STARTTLS refused: {reply}")));
    }
    // Anything the server sent after its 220 would otherwise be read as if it had come
    // through TLS (the STARTTLS response-injection attack).
    if !io.buffer().is_empty() {
        return Err(Failure::Connect("data after STARTTLS reply".into()));
    }
    let name = server_name(target.host).map_err(Failure::Connect)?;
    let tls_stream = TlsConnector::from(tls)
        .connect(name, io.into_inner())
        .await
        .map_err(|e| Failure::Connect(format!("TLS: {e}")))?;
    let mut io = BufReader::new(tls_stream);
    let (ehlo, keywords) = command(&mut io, &format!("EHLO {}", message.helo))
        .await
        .map_err(connect_err)?;
    if ehlo.code != 250 {
        return Err(Failure::Connect(format!(
            "EHLO after STARTTLS refused: {ehlo}"
        )));
    }
    transaction(&mut io, &keywords, message).await
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|e| format!("bad TLS name {host}: {e}"))
}

fn has_keyword(keywords: &[String], wanted: &str) -> bool {
    keywords.iter().any(|k| {
        k.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(wanted))
    })
}

/// MAIL, RCPT for each recipient, DATA. Server refusals become replies; I/O errors after
/// MAIL mean the message may be half-sent and are reported as broken.
async fn transaction<S>(
    io: &mut BufReader<S>,
    keywords: &[String],
    message: &Message<'_>,
) -> Result<Vec<Reply>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let broken = |e: io::Error| Failure::Broken(e.to_string());
    let mut mail = format!("MAIL FROM:<{}>", message.mail_from.unwrap_or(""));
    if has_keyword(keywords, "8BITMIME") && !message.data.is_ascii() {
        mail.push_str(" BODY=8BITMIME");
    }
    let (reply, _) = command(io, &mail).await.map_err(broken)?;
    if reply.code != 250 {
        quit(io).await;
        return Ok(vec![reply; message.rcpt_to.len()]);
    }
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(message.rcpt_to.len());
    for rcpt in message.rcpt_to {
        let (reply, _) = command(io, &format!("RCPT TO:<{rcpt}>"))
            .await
            .map_err(broken)?;
        replies.push((!matches!(reply.code, 250 | 251)).then_some(reply));
    }
    if replies.iter().all(Option::is_some) {
        quit(io).await;
        return Ok(replies.into_iter().flatten().collect());
    }
    let (reply, _) = command(io, "DATA").await.map_err(broken)?;
    let done = if reply.code == 354 {
        io.get_mut().write_all(message.data).await.map_err(broken)?;
        io.get_mut().write_all(b".\r\n").await.map_err(broken)?;
        io.get_mut().flush().await.map_err(broken)?;
        let done = read_reply(io).await.map_err(broken)?.0;
        if done.code == 250 {
            Reply::new(250, "OK (SMTP)")
        } else {
            done
        }
    } else {
        reply
    };
    quit(io).await;
    Ok(replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| done.clone()))
        .collect())
}

async fn quit<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>) {
    // Best effort: the outcome is already known.
    let _ = io.get_mut().write_all(b"QUIT\r\n").await;
    let _ = io.get_mut().flush().await;
}

async fn command<S>(io: &mut BufReader<S>, line: &str) -> io::Result<(Reply, Vec<String>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let w = io.get_mut();
    w.write_all(line.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await?;
    read_reply(io).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multi_line_reply() {
        let mut input: &[u8] = b"250-mx.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
        let (reply, lines) = read_reply(&mut input).await.unwrap();
        assert_eq!(reply.code, 250);
        assert!(has_keyword(&lines, "starttls"));
        assert!(has_keyword(&lines, "8BITMIME"));
        assert!(!has_keyword(&lines, "SMTPUTF8"));
    }

    #[tokio::test]
    async fn garbage_reply() {
        let mut input: &[u8] = b"hello\r\n";
        assert!(read_reply(&mut input).await.is_err());
        let mut closed: &[u8] = b"250-partial\r\n";
        assert!(read_reply(&mut closed).await.is_err());
    }

    #[tokio::test]
    async fn first_answering_address_wins() {
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // 127.0.0.3 refuses; the listener on 127.0.0.2 answers.
        let addrs: [IpAddr; 2] = ["127.0.0.3".parse().unwrap(), "127.0.0.2".parse().unwrap()];
        let stream = connect(&addrs, port).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().ip(), addrs[1]);
        let err = connect(&addrs[..1], port).await.unwrap_err();
        assert!(err.starts_with("127.0.0.3:"), "{err}");
        assert_eq!(connect(&[], port).await.unwrap_err(), "no address");
    }

    #[test]
    fn tls_names() {
        assert!(matches!(
            server_name("[192.0.2.1]"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("mx.example.org"),
            Ok(ServerName::DnsName(_))
        ));
    }
}

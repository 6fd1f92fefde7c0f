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
use crate::shutdown::{Sessions, Shutdown};

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

/// How long a stopping filtermail lets accepted sessions finish. In-flight transactions
/// on loopback take milliseconds; this bounds a stuck peer. Well below the units'
/// `TimeoutStopSec=60`, after which systemd would kill the process (and cut the sessions
/// anyway), and below Postfix's `smtpd_proxy_timeout` (100 s), which is how long Postfix
/// waits for the next filtermail's greeting while connections queue on the socket.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// How long a session with no transaction open may take to send its next command once
/// shutdown was requested. Postfix sends EHLO right after the greeting and QUIT right
/// after a transaction, so a session accepted just before the signal still gets served;
/// one that stays quiet longer is idle and gets a 421.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Accept connections forever, one task each.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, limits: Limits) {
    serve_until(listener, handler, limits, Shutdown::never()).await;
}

/// Accept connections until `shutdown`, then close this process's copy of the listener
/// (with socket activation systemd keeps the socket: new connections wait in its queue
/// for the next process) and let the sessions finish, at most [`DRAIN_LIMIT`].
pub async fn serve_until<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: Shutdown,
) {
    let sessions = Sessions::new();
    loop {
        let accepted = tokio::select! {
            // a connection that arrived with the signal is left to the next process
            biased;
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Replies are small and latency-bound; Nagle would add delay per command.
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                let guard = sessions.guard();
                tokio::spawn(async move {
                    if let Err(e) = session_until(stream, &*handler, &limits, &shutdown).await {
                        log::debug!("connection from {peer}: {e}");
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                log::error!("accept failed: {e}");
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    drop(listener);
    log::info!("{addr}: not accepting any more, letting sessions finish");
    match sessions.drained(DRAIN_LIMIT).await {
        0 => log::info!("{addr}: all sessions finished"),
        n => log::warn!(
            "{addr}: {n} sessions still open after {} s, cut",
            DRAIN_LIMIT.as_secs()
        ),
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
    session_until(stream, handler, limits, &Shutdown::never()).await
}

/// Whether a session waiting for its next command goes on.
enum Next {
    /// Input arrived (or the peer closed; the read that follows sees it).
    Input,
    /// Shutdown was requested and the peer stayed quiet for [`IDLE_GRACE`].
    Idle,
}

/// Wait for the next command. With a transaction open (or input already buffered) the
/// session always goes on: what was started is finished, bounded by [`DRAIN_LIMIT`].
async fn next_command<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    in_transaction: bool,
    shutdown: &Shutdown,
    limits: &Limits,
) -> io::Result<Next> {
    if in_transaction {
        return Ok(Next::Input);
    }
    let idle = async {
        shutdown.requested().await;
        tokio::time::sleep(IDLE_GRACE).await;
    };
    // fill_buf is cancel-safe: bytes it read stay in the buffer for the read that follows
    with_timeout(limits.idle_timeout, async {
        tokio::select! {
            biased;
            filled = reader.fill_buf() => filled.map(|_| Next::Input),
            () = idle => Ok(Next::Idle),
        }
    })
    .await
}

/// [`session`], ending politely once `shutdown` is requested: a session with no
/// transaction open that stays quiet gets `421` and is closed; an open transaction is
/// finished first.
pub async fn session_until<S, H>(
    stream: S,
    handler: &H,
    limits: &Limits,
    shutdown: &Shutdown,
) -> io::Result<()>
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
        if let Next::Idle = next_command(&mut reader, mail_from.is_some(), shutdown, limits).await?
        {
            wr.write_all(b"421 4.3.2 filtermail shutting down, try again\r\n")
                .await?;
            wr.flush().await?;
            return Ok(());
        }
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
    use crate::filtermail::smtp::client::read_reply_lines;
    use crate::shutdown;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpStream;
    use tokio::sync::{Semaphore, mpsc};

    /// Answers 250 to each message, but only after a permit is released; says when a
    /// message has arrived.
    struct Gate {
        arrived: mpsc::UnboundedSender<()>,
        release: Semaphore,
        delivered: AtomicUsize,
    }

    impl Gate {
        fn new(permits: usize) -> (Arc<Gate>, mpsc::UnboundedReceiver<()>) {
            let (arrived, rx) = mpsc::unbounded_channel();
            let gate = Gate {
                arrived,
                release: Semaphore::new(permits),
                delivered: AtomicUsize::new(0),
            };
            (Arc::new(gate), rx)
        }
    }

    impl Handler for Gate {
        async fn data(&self, _envelope: Envelope) -> Reply {
            let _ = self.arrived.send(());
            self.release.acquire().await.unwrap().forget();
            self.delivered.fetch_add(1, Ordering::SeqCst);
            Reply::ok()
        }
    }

    struct Client(BufReader<TcpStream>);

    impl Client {
        async fn connect(addr: std::net::SocketAddr) -> Client {
            Client(BufReader::new(TcpStream::connect(addr).await.unwrap()))
        }

        async fn reply(&mut self) -> u16 {
            read_reply_lines(&mut self.0).await.unwrap().0.code
        }

        async fn send(&mut self, text: &str) {
            self.0.get_mut().write_all(text.as_bytes()).await.unwrap();
        }

        async fn command(&mut self, line: &str) -> u16 {
            self.send(&format!("{line}\r\n")).await;
            self.reply().await
        }

        /// Greeting through DATA's 354, then the message; the final reply is left unread.
        async fn start_message(&mut self) {
            assert_eq!(self.reply().await, 220);
            assert_eq!(self.command("EHLO postfix").await, 250);
            assert_eq!(self.command("MAIL FROM:<a@x.example>").await, 250);
            assert_eq!(self.command("RCPT TO:<b@y.example>").await, 250);
            assert_eq!(self.command("DATA").await, 354);
            self.send("Subject: s\r\n\r\nhi\r\n.\r\n").await;
        }
    }

    /// A listener and the copy systemd would keep of it.
    fn socket() -> (TcpListener, std::net::TcpListener, std::net::SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let kept = listener.try_clone().unwrap();
        listener.set_nonblocking(true).unwrap();
        kept.set_nonblocking(true).unwrap();
        (TcpListener::from_std(listener).unwrap(), kept, addr)
    }

    #[tokio::test]
    async fn a_transaction_in_flight_finishes_and_a_new_connection_waits_for_the_next_process() {
        let (listener, kept, addr) = socket();
        let (trigger, stop) = shutdown::channel();
        let (old, mut arrived) = Gate::new(0);
        let old_server = tokio::spawn(serve_until(listener, old.clone(), Limits::new(1000), stop));

        let mut inflight = Client::connect(addr).await;
        inflight.start_message().await;
        arrived.recv().await.unwrap();
        // SIGTERM while the message is being handed on
        trigger.fire();
        let mut queued = Client::connect(addr).await;
        old.release.add_permits(1);
        assert_eq!(
            inflight.reply().await,
            250,
            "the accepted message is finished"
        );
        assert_eq!(inflight.command("QUIT").await, 221);
        old_server.await.unwrap();
        assert_eq!(old.delivered.load(Ordering::SeqCst), 1);

        // the connection made after the signal was left in the socket's queue: the next
        // process, started on the kept socket, serves it
        let (new, _) = Gate::new(1);
        let next = TcpListener::from_std(kept).unwrap();
        tokio::spawn(serve(next, new.clone(), Limits::new(1000)));
        queued.start_message().await;
        assert_eq!(queued.reply().await, 250);
        assert_eq!(new.delivered.load(Ordering::SeqCst), 1);
        assert_eq!(old.delivered.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_idle_session_gets_421_at_shutdown() {
        let (listener, _kept, addr) = socket();
        let (trigger, stop) = shutdown::channel();
        let (gate, _) = Gate::new(0);
        let server = tokio::spawn(serve_until(listener, gate, Limits::new(1000), stop));
        let mut idle = Client::connect(addr).await;
        assert_eq!(idle.reply().await, 220);
        assert_eq!(idle.command("EHLO postfix").await, 250);
        trigger.fire();
        assert_eq!(idle.reply().await, 421);
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut idle.0, &mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty(), "closed after the 421");
        server.await.unwrap();
    }

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

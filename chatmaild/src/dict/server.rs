//! Accept loop and per-connection I/O for the dict protocol.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::DictHandler;
use super::session::{Session, describe};
use crate::shutdown::{Sessions, Shutdown};

/// Longest request line we process. Legitimate lines (keys with an escaped password and an
/// address) are far shorter; longer ones are discarded while reading and answered as
/// failures, so a hostile client cannot make us buffer unbounded amounts of data.
pub const MAX_LINE: usize = 64 * 1024;

/// Bind the socket, removing a stale socket file left by a previous run.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// Serve `handler` on the unix socket at `path` until the task is cancelled.
pub async fn serve<H: DictHandler>(path: &Path, handler: Arc<H>) -> io::Result<()> {
    let listener = bind(path)?;
    serve_listener(listener, handler).await
}

/// Accept connections forever, one task per connection.
pub async fn serve_listener<H: DictHandler>(
    listener: UnixListener,
    handler: Arc<H>,
) -> io::Result<()> {
    serve_listener_until(listener, handler, Shutdown::never()).await;
    Ok(())
}

/// How long a stopping dict service lets its connections finish the request in hand.
/// Requests take milliseconds; this bounds a stuck one, well below the unit's
/// `TimeoutStopSec=30`.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown`; then close this process's copy of the listener
/// (with socket activation systemd keeps the socket, and Dovecot's new connections wait
/// for the next process) and close each connection once it is between requests and
/// transactions, at most [`DRAIN_LIMIT`]. Dovecot reconnects for its next request.
pub async fn serve_listener_until<H: DictHandler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let sessions = Sessions::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let handler = handler.clone();
                let shutdown = shutdown.clone();
                let guard = sessions.guard();
                tokio::spawn(async move {
                    if let Err(e) = handle_connection(stream, handler, &shutdown).await {
                        log::warn!("dict connection ended with error: {e}");
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                log::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    match sessions.drained(DRAIN_LIMIT).await {
        0 => log::info!("shutdown: all dict connections finished"),
        n => log::warn!("shutdown: {n} dict connections still busy, cut"),
    }
}

/// Result of reading one line with a length bound.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A complete line (or the final unterminated one) is in the buffer, without `\n`.
    Line,
    /// The line exceeded the bound; the buffer holds its first `max` bytes and the rest was
    /// consumed and dropped.
    TooLong,
    /// End of stream, nothing read.
    Eof,
}

/// Read up to and including the next `\n`, keeping at most `max` bytes in `buf`.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = found_newline.map_or(available.len(), |i| i + 1);
        reader.consume(consumed);
        if found_newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

async fn handle_connection<H: DictHandler>(
    stream: UnixStream,
    handler: Arc<H>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let (read_half, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut session = Box::new(Session::new());
    let mut buf = Vec::new();
    loop {
        // Between requests, outside a transaction, a stopping service closes the
        // connection; input already sent is served first (fill_buf is cancel-safe).
        if !session.in_transaction() {
            let input = tokio::select! {
                biased;
                filled = reader.fill_buf() => filled.map(|_| true)?,
                () = shutdown.requested() => false,
            };
            if !input {
                return Ok(());
            }
        }
        let reply = match read_line_bounded(&mut reader, &mut buf, MAX_LINE).await? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                log::warn!(
                    "dict request longer than {MAX_LINE} bytes rejected: {}",
                    describe(&buf)
                );
                session.reject(&buf)
            }
            LineRead::Line => {
                let line = buf.trim_ascii();
                // An empty line is how the Python service recognised the end of input.
                if line.is_empty() {
                    return Ok(());
                }
                if Session::may_block(line) {
                    let line = line.to_vec();
                    let handler = handler.clone();
                    let (s, reply) = tokio::task::spawn_blocking(move || {
                        let mut session = session;
                        let reply = session.handle_line(handler.as_ref(), &line);
                        (session, reply)
                    })
                    .await
                    .map_err(|e| io::Error::other(format!("handler task failed: {e}")))?;
                    session = s;
                    reply
                } else {
                    session.handle_line(handler.as_ref(), line)
                }
            }
        };
        if let Some(reply) = reply {
            writer.write_all(reply.as_bytes()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::LookupResult;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bounded_reader() {
        let data = b"short\nexactly10\n0123456789abc\nlast".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"exactly10");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::TooLong
        );
        assert_eq!(buf, b"0123456789");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 10).await.unwrap(),
            LineRead::Eof
        );
    }

    struct Echo;
    impl DictHandler for Echo {
        fn lookup(&self, key: &str, _user: Option<&str>) -> LookupResult {
            LookupResult::Found(key.to_owned())
        }
    }

    async fn start() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.socket");
        // A stale file must not prevent binding.
        std::fs::write(&path, b"stale").unwrap();
        let listener = bind(&path).unwrap();
        tokio::spawn(serve_listener(listener, Arc::new(Echo)));
        (dir, path)
    }

    async fn roundtrip(path: &Path, input: &[u8]) -> Vec<u8> {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(input).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_lines_over_socket() {
        let (_dir, path) = start().await;
        let out = roundtrip(
            &path,
            b"H3\t2\t0\t\tx\n  Lkey1\t\r\nU1\tk\nB1\tu\nC1\nI0\t0\tp\nLkey2",
        )
        .await;
        assert_eq!(out, b"Okey1\nO\n\nOkey2\n");
    }

    #[tokio::test]
    async fn empty_line_ends_connection() {
        let (_dir, path) = start().await;
        let out = roundtrip(&path, b"La\n\nLb\n").await;
        assert_eq!(out, b"Oa\n");
    }

    #[tokio::test]
    async fn one_megabyte_line_is_rejected_and_connection_survives() {
        let (_dir, path) = start().await;
        let mut input = b"L".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1024 * 1024));
        input.extend_from_slice(b"\nI0\t0\t");
        input.extend(std::iter::repeat_n(b'y', 1024 * 1024));
        input.extend_from_slice(b"\nLok\n");
        let out = roundtrip(&path, &input).await;
        assert_eq!(out, b"F\n\nOok\n");
    }

    #[tokio::test]
    async fn many_concurrent_connections() {
        let (_dir, path) = start().await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                let out = roundtrip(&path, format!("Lk{i}\nB1\tu\nC1\n").as_bytes()).await;
                assert_eq!(out, format!("Ok{i}\nO\n").as_bytes());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn garbage_does_not_kill_the_server() {
        let (_dir, path) = start().await;
        let out = roundtrip(&path, b"\xff\xfe\x00\n\x01\x02\nL\xff\nS\n C \nLafter\n").await;
        assert_eq!(out, b"F\nF\nOafter\n");
        // Server still accepts new connections afterwards.
        assert_eq!(roundtrip(&path, b"Lx\n").await, b"Ox\n");
    }
}

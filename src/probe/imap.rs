//! A minimal IMAP4rev1 client for probing a relay: login, select, wait for new mail with
//! IDLE, fetch bodies, and the METADATA commands chat clients use.
//!
//! Responses are read into a buffer that survives cancellation (the IDLE wait is cut off
//! by a timeout), and literals are kept inline so the small parsers below see a response
//! exactly as sent.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{Connector, TlsStream};

/// A response larger than this is treated as a broken server (bounds memory).
const MAX_RESPONSE: usize = 64 << 20;

/// How a tagged command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// A command's completion and the untagged responses that came before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// The text after the status word, e.g. `[AUTHENTICATIONFAILED] Authentication failed.`
    pub text: String,
    /// Untagged responses without the leading `* `, literals inline, CRLF stripped.
    pub untagged: Vec<Vec<u8>>,
}

impl Response {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// `OK`/`NO`/`BAD` and the text, for messages.
    pub fn summary(&self) -> String {
        let word = match self.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        };
        format!("{word} {}", self.text)
    }
}

/// What SELECT reports about a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mailbox {
    pub exists: u32,
    /// The UID the next delivered message will get (0 when the server did not say).
    pub uid_next: u32,
}

/// One IMAP session over any stream (plain before STARTTLS, TLS after).
/// An IDLE in progress (see [`Imap::idle_begin`]).
#[derive(Debug)]
pub struct Idling {
    tag: String,
}

pub struct Imap<S> {
    stream: S,
    buf: Vec<u8>,
    next_tag: u32,
    /// The last `* N EXISTS` seen in any response.
    pub exists: u32,
    /// When `exists` last grew: the moment new mail was reported, before any round trip
    /// that follows (leaving IDLE, fetching), so latency measurements do not include those.
    pub exists_grew_at: Option<std::time::Instant>,
    /// Capabilities from the greeting, replaced by `capability()`.
    pub capabilities: Vec<String>,
}

impl Imap<TlsStream> {
    /// Implicit TLS (993, or 443 with ALPN `imap`); the greeting is read.
    pub async fn connect_tls(
        connector: &Connector,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Imap<TlsStream>> {
        let stream = connector.tls(host, port).await?;
        Imap::start(stream).await
    }

    /// Plain connection upgraded with STARTTLS (143); greeting read, capabilities asked
    /// again over TLS (the pre-TLS ones must not be trusted).
    pub async fn connect_starttls(
        connector: &Connector,
        host: &str,
        port: u16,
    ) -> anyhow::Result<Imap<TlsStream>> {
        let tcp = connector.tcp(host, port).await?;
        let mut plain: Imap<TcpStream> = Imap::start(tcp).await?;
        let response = plain.command("STARTTLS").await?;
        if !response.is_ok() {
            bail!("STARTTLS refused: {}", response.summary());
        }
        let tls = connector.upgrade(plain.stream, host).await?;
        let mut imap = Imap {
            stream: tls,
            buf: Vec::new(),
            next_tag: plain.next_tag,
            exists: 0,
            exists_grew_at: None,
            capabilities: Vec::new(),
        };
        imap.capability().await?;
        Ok(imap)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Imap<S> {
    /// Read the greeting (`* OK`, possibly with capabilities).
    pub async fn start(stream: S) -> anyhow::Result<Imap<S>> {
        let mut imap = Imap {
            stream,
            buf: Vec::new(),
            next_tag: 1,
            exists: 0,
            exists_grew_at: None,
            capabilities: Vec::new(),
        };
        let greeting = imap.read_response().await.context("reading the greeting")?;
        let Some(text) = greeting.strip_prefix(b"* OK") else {
            bail!(
                "greeting: {}",
                String::from_utf8_lossy(&greeting).trim_end()
            );
        };
        imap.capabilities = capabilities_in(&String::from_utf8_lossy(text));
        Ok(imap)
    }

    /// Send one command (without tag) and read up to its tagged completion.
    pub async fn command(&mut self, command: &str) -> anyhow::Result<Response> {
        let tag = self.send_tagged(command).await?;
        self.complete(&tag).await
    }

    /// CAPABILITY; the list is also kept in `self.capabilities`.
    pub async fn capability(&mut self) -> anyhow::Result<Vec<String>> {
        let response = self.command("CAPABILITY").await?;
        if !response.is_ok() {
            bail!("CAPABILITY: {}", response.summary());
        }
        for line in &response.untagged {
            if let Some(rest) = line.strip_prefix(b"CAPABILITY ") {
                self.capabilities = String::from_utf8_lossy(rest)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
            }
        }
        Ok(self.capabilities.clone())
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    /// LOGIN with quoted strings. A refused login is an `Ok(Response)` with `NO`.
    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<Response> {
        let response = self
            .command(&format!("LOGIN {} {}", quote(user)?, quote(password)?))
            .await?;
        // Dovecot sends the post-login capabilities in the completion's response code
        if let Some(caps) = response.text.strip_prefix("[CAPABILITY ")
            && let Some((caps, _)) = caps.split_once(']')
        {
            self.capabilities = caps.split_whitespace().map(str::to_owned).collect();
        }
        Ok(response)
    }

    pub async fn select(&mut self, mailbox: &str) -> anyhow::Result<Mailbox> {
        let response = self.command(&format!("SELECT {}", quote(mailbox)?)).await?;
        if !response.is_ok() {
            bail!("SELECT {mailbox}: {}", response.summary());
        }
        let mut uid_next = 0;
        for line in &response.untagged {
            let text = String::from_utf8_lossy(line);
            if let Some(n) = text
                .strip_prefix("OK [UIDNEXT ")
                .and_then(|r| r.split(']').next())
            {
                uid_next = n.parse().unwrap_or(0);
            }
        }
        Ok(Mailbox {
            exists: self.exists,
            uid_next,
        })
    }

    /// Wait with IDLE until the selected mailbox holds at least `min_exists` messages or
    /// `timeout` passes; returns the last count seen. NOOP first, so mail that arrived
    /// before the IDLE is not waited for.
    pub async fn idle_until(&mut self, min_exists: u32, timeout: Duration) -> anyhow::Result<u32> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.command("NOOP").await?;
        if self.exists >= min_exists {
            return Ok(self.exists);
        }
        let idle = self.idle_begin().await?;
        self.idle_end(idle, min_exists, deadline).await
    }

    /// Sends IDLE and returns once the server said it idles (`+`): from then on it owes the
    /// client word of new mail. Finish with [`Imap::idle_end`].
    pub async fn idle_begin(&mut self) -> anyhow::Result<Idling> {
        let tag = self.send_tagged("IDLE").await?;
        loop {
            let line = self.read_response().await?;
            if line.starts_with(b"+") {
                return Ok(Idling { tag });
            }
            if line.starts_with(tag.as_bytes()) {
                bail!(
                    "IDLE refused: {}",
                    String::from_utf8_lossy(&line).trim_end()
                );
            }
        }
    }

    /// Waits in IDLE until the mailbox holds `min_exists` messages or `deadline` passes,
    /// then ends the IDLE; returns the last count seen.
    pub async fn idle_end(
        &mut self,
        idle: Idling,
        min_exists: u32,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<u32> {
        while self.exists < min_exists {
            match tokio::time::timeout_at(deadline, self.read_response()).await {
                Ok(line) => {
                    line?;
                }
                Err(_) => break,
            }
        }
        self.send_line("DONE").await?;
        let response = self.complete(&idle.tag).await?;
        if !response.is_ok() {
            bail!("IDLE: {}", response.summary());
        }
        Ok(self.exists)
    }

    /// `UID FETCH <set> (UID BODY.PEEK[])`: (uid, full message) pairs, flags untouched.
    pub async fn uid_fetch_bodies(&mut self, uid_set: &str) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
        let response = self
            .command(&format!("UID FETCH {uid_set} (UID BODY.PEEK[])"))
            .await?;
        if !response.is_ok() {
            bail!("UID FETCH: {}", response.summary());
        }
        Ok(response
            .untagged
            .iter()
            .filter_map(|line| parse_fetch_body(line))
            .collect())
    }

    /// `GETMETADATA <mailbox> <key>`: the value, `None` for NIL or no entry.
    /// Server attributes use the empty mailbox name.
    pub async fn get_metadata(
        &mut self,
        mailbox: &str,
        key: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let response = self
            .command(&format!("GETMETADATA {} {}", quote(mailbox)?, quote(key)?))
            .await?;
        if !response.is_ok() {
            bail!("GETMETADATA {key}: {}", response.summary());
        }
        Ok(response
            .untagged
            .iter()
            .filter_map(|line| parse_metadata(line))
            .flatten()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v))
    }

    /// `SETMETADATA <mailbox> (<key> <value>)`; a refusal is an `Ok(Response)` with `NO`.
    pub async fn set_metadata(
        &mut self,
        mailbox: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<Response> {
        self.command(&format!(
            "SETMETADATA {} ({} {})",
            quote(mailbox)?,
            quote(key)?,
            quote(value)?
        ))
        .await
    }

    /// LOGOUT, ignoring the answer: the session is over either way.
    pub async fn logout(mut self) {
        let _ = self.command("LOGOUT").await;
        let _ = self.stream.shutdown().await;
    }

    async fn send_tagged(&mut self, command: &str) -> anyhow::Result<String> {
        let tag = format!("p{}", self.next_tag);
        self.next_tag += 1;
        self.send_line(&format!("{tag} {command}")).await?;
        Ok(tag)
    }

    async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.stream.write_all(line.as_bytes()).await?;
        self.stream.write_all(b"\r\n").await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Read responses until the one tagged `tag`; untagged ones are collected.
    async fn complete(&mut self, tag: &str) -> anyhow::Result<Response> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_response().await?;
            if let Some(rest) = line.strip_prefix(b"* ") {
                untagged.push(rest.to_vec());
                continue;
            }
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            {
                return parse_completion(rest, untagged);
            }
            // continuation requests are not expected: we send no literals
            bail!(
                "unexpected response {:?}",
                String::from_utf8_lossy(&line).trim_end()
            );
        }
    }

    /// One complete response (literals inline), CRLF stripped; updates `exists`.
    async fn read_response(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(len) = response_len(&self.buf) {
                let mut line: Vec<u8> = self.buf.drain(..len).collect();
                while matches!(line.last(), Some(b'\r' | b'\n')) {
                    line.pop();
                }
                if let Some(n) = parse_exists(&line) {
                    if n > self.exists {
                        self.exists_grew_at = Some(std::time::Instant::now());
                    }
                    self.exists = n;
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_RESPONSE {
                bail!("response larger than {MAX_RESPONSE} bytes");
            }
            // read_buf into the persistent buffer is cancel-safe: nothing read is lost
            // when an IDLE wait times out
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                bail!("connection closed by the server");
            }
        }
    }
}

/// IMAP quoted string; CR, LF and NUL cannot be quoted (they would need a literal).
pub fn quote(s: &str) -> anyhow::Result<String> {
    if s.contains(['\r', '\n', '\0']) {
        bail!("{s:?} cannot be sent as an IMAP quoted string");
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Length of the first complete response in `buf` (through its final LF), following
/// `{n}` literals; `None` while more bytes are needed.
fn response_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let lf = pos + buf[pos..].iter().position(|&b| b == b'\n')?;
        let line = &buf[pos..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match literal_len(line) {
            Some(n) => {
                let end = lf + 1 + n;
                if buf.len() < end {
                    return None;
                }
                pos = end;
            }
            None => return Some(lf + 1),
        }
    }
}

/// `{n}` or `{n+}` at the end of a line announces n literal bytes.
fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn parse_completion(rest: &[u8], untagged: Vec<Vec<u8>>) -> anyhow::Result<Response> {
    let text = String::from_utf8_lossy(rest);
    let (word, text) = text.split_once(' ').unwrap_or((&text, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        other => bail!("unknown completion {other:?}"),
    };
    Ok(Response {
        status,
        text: text.to_owned(),
        untagged,
    })
}

/// `* N EXISTS` (given without the `* `, or with it).
fn parse_exists(line: &[u8]) -> Option<u32> {
    let line = line.strip_prefix(b"* ")?;
    let text = std::str::from_utf8(line).ok()?;
    let (n, word) = text.split_once(' ')?;
    word.eq_ignore_ascii_case("EXISTS")
        .then(|| n.parse().ok())
        .flatten()
}

/// `[CAPABILITY a b c]` inside a greeting or completion text.
fn capabilities_in(text: &str) -> Vec<String> {
    text.split_once("[CAPABILITY ")
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(caps, _)| caps.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The IMAP tokens the parsers below need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    /// A quoted string or a literal: both carry bytes.
    String(Vec<u8>),
    Nil,
    Open,
    Close,
}

fn tokens(mut s: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    loop {
        while let [b' ', rest @ ..] = s {
            s = rest;
        }
        match s {
            [] => return Some(out),
            [b'(', rest @ ..] => {
                out.push(Token::Open);
                s = rest;
            }
            [b')', rest @ ..] => {
                out.push(Token::Close);
                s = rest;
            }
            [b'"', rest @ ..] => {
                let mut value = Vec::new();
                let mut i = 0;
                loop {
                    match rest.get(i)? {
                        b'\\' => {
                            value.push(*rest.get(i + 1)?);
                            i += 2;
                        }
                        b'"' => break,
                        b => {
                            value.push(*b);
                            i += 1;
                        }
                    }
                }
                out.push(Token::String(value));
                s = &rest[i + 1..];
            }
            [b'{', ..] => {
                let lf = s.iter().position(|&b| b == b'\n')?;
                let header = s[..lf].strip_suffix(b"\r").unwrap_or(&s[..lf]);
                let n = literal_len(header)?;
                let body = s.get(lf + 1..lf + 1 + n)?;
                out.push(Token::String(body.to_vec()));
                s = &s[lf + 1 + n..];
            }
            _ => {
                let end = s
                    .iter()
                    .position(|&b| matches!(b, b' ' | b'(' | b')'))
                    .unwrap_or(s.len());
                let atom = String::from_utf8_lossy(&s[..end]).into_owned();
                out.push(if atom.eq_ignore_ascii_case("NIL") {
                    Token::Nil
                } else {
                    Token::Atom(atom)
                });
                s = &s[end..];
            }
        }
    }
}

/// `N FETCH (UID u BODY[] {n}...)` → (u, body).
fn parse_fetch_body(line: &[u8]) -> Option<(u32, Vec<u8>)> {
    let toks = tokens(line)?;
    match toks.get(1)? {
        Token::Atom(a) if a.eq_ignore_ascii_case("FETCH") => {}
        _ => return None,
    }
    let mut uid = None;
    let mut body = None;
    let mut items = toks.get(3..)?.iter();
    while let Some(tok) = items.next() {
        let Token::Atom(name) = tok else { continue };
        let value = items.next()?;
        match (name.to_ascii_uppercase().as_str(), value) {
            ("UID", Token::Atom(n)) => uid = n.parse().ok(),
            ("BODY[]", Token::String(b)) => body = Some(b.clone()),
            _ => {}
        }
    }
    Some((uid?, body?))
}

type Entries = Vec<(String, Option<Vec<u8>>)>;

/// `METADATA <mailbox> (key value ...)` → entries (`None` for NIL).
fn parse_metadata(line: &[u8]) -> Option<Entries> {
    let toks = tokens(line)?;
    match toks.first()? {
        Token::Atom(a) if a.eq_ignore_ascii_case("METADATA") => {}
        _ => return None,
    }
    let mut entries = Vec::new();
    let mut rest = toks.get(3..)?.iter();
    while let Some(key) = rest.next() {
        let key = match key {
            Token::Atom(k) => k.clone(),
            Token::String(k) => String::from_utf8_lossy(k).into_owned(),
            _ => continue,
        };
        let value = match rest.next()? {
            Token::String(v) => Some(v.clone()),
            Token::Atom(v) => Some(v.as_bytes().to_vec()),
            _ => None,
        };
        entries.push((key, value));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader, duplex};

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quote("a\r\nb").is_err());
    }

    #[test]
    fn responses_end_after_literals() {
        assert_eq!(response_len(b"* OK x\r\nrest"), Some(8));
        assert_eq!(response_len(b"* 1 FETCH (BODY[] {3}\r\nab"), None);
        let full = b"* 1 FETCH (BODY[] {3}\r\nabc)\r\nnext";
        assert_eq!(response_len(full), Some(full.len() - 4));
        assert_eq!(response_len(b"partial"), None);
        assert_eq!(literal_len(b"a {12+}"), Some(12));
        assert_eq!(literal_len(b"a {x}"), None);
    }

    #[test]
    fn fetch_body_with_literal() {
        let line = b"3 FETCH (UID 17 BODY[] {10}\r\nFrom: a\r\n\r\n)";
        assert_eq!(
            parse_fetch_body(line),
            Some((17, b"From: a\r\n\r\n"[..10].to_vec()))
        );
        assert_eq!(parse_fetch_body(b"3 EXISTS"), None);
    }

    #[test]
    fn metadata_values() {
        let line = b"METADATA \"\" (/shared/vendor/deltachat/irohrelay \"https://x/\")";
        assert_eq!(
            parse_metadata(line).unwrap(),
            [(
                "/shared/vendor/deltachat/irohrelay".to_owned(),
                Some(b"https://x/".to_vec())
            )]
        );
        let line = b"METADATA INBOX (/private/devicetoken {9}\r\n1111 2222 /private/x NIL)";
        assert_eq!(
            parse_metadata(line).unwrap(),
            [
                (
                    "/private/devicetoken".to_owned(),
                    Some(b"1111 2222".to_vec())
                ),
                ("/private/x".to_owned(), None)
            ]
        );
    }

    #[test]
    fn exists_and_capabilities() {
        assert_eq!(parse_exists(b"* 4 EXISTS"), Some(4));
        assert_eq!(parse_exists(b"* 4 RECENT"), None);
        assert_eq!(
            capabilities_in(" [CAPABILITY IMAP4rev1 IDLE XCHATMAIL] ready"),
            ["IMAP4rev1", "IDLE", "XCHATMAIL"]
        );
    }

    #[test]
    fn completion_status() {
        let r =
            parse_completion(b"NO [AUTHENTICATIONFAILED] Authentication failed.", vec![]).unwrap();
        assert_eq!(r.status, Status::No);
        assert_eq!(
            r.summary(),
            "NO [AUTHENTICATIONFAILED] Authentication failed."
        );
    }

    /// A scripted server: for each command line it reads, writes the canned answer with
    /// `TAG` replaced by the command's tag.
    async fn serve(server: tokio::io::DuplexStream, script: Vec<&'static str>) {
        let (rd, mut wr) = tokio::io::split(server);
        let mut rd = BufReader::new(rd);
        wr.write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
            .await
            .unwrap();
        let mut tag = String::new();
        for answer in script {
            let mut line = String::new();
            rd.read_line(&mut line).await.unwrap();
            if line != "DONE\r\n" {
                tag = line.split(' ').next().unwrap().to_owned();
            }
            wr.write_all(answer.replace("TAG", &tag).as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn session_login_select_idle_fetch() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(serve(
            server,
            vec![
                "TAG OK [CAPABILITY IMAP4rev1 IDLE XCHATMAIL XDELTAPUSH] Logged in\r\n",
                "* 0 EXISTS\r\n* OK [UIDNEXT 5] next\r\nTAG OK [READ-WRITE] Select completed\r\n",
                "TAG OK NOOP completed\r\n",
                "+ idling\r\n* 1 EXISTS\r\n",
                "TAG OK Idle completed\r\n",
                "* 1 FETCH (UID 5 BODY[] {4}\r\nhi\r\n)\r\nTAG OK Fetch completed\r\n",
            ],
        ));
        let mut imap = Imap::start(client).await.unwrap();
        assert!(imap.has_capability("idle"));
        assert!(imap.login("a@x", "pw").await.unwrap().is_ok());
        assert!(imap.has_capability("XCHATMAIL"));
        let mailbox = imap.select("INBOX").await.unwrap();
        assert_eq!(
            mailbox,
            Mailbox {
                exists: 0,
                uid_next: 5
            }
        );
        assert!(imap.exists_grew_at.is_none());
        let before = std::time::Instant::now();
        let n = imap.idle_until(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(n, 1);
        assert!(imap.exists_grew_at.is_some_and(|t| t >= before));
        let bodies = imap.uid_fetch_bodies("5:*").await.unwrap();
        assert_eq!(bodies, [(5, b"hi\r\n".to_vec())]);
    }

    #[tokio::test]
    async fn idle_gives_up_at_the_timeout() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(serve(
            server,
            vec![
                "TAG OK NOOP completed\r\n",
                "+ idling\r\n",
                "TAG OK Idle completed\r\n",
            ],
        ));
        let mut imap = Imap::start(client).await.unwrap();
        let n = imap
            .idle_until(1, Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}

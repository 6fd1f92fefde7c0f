//! The HTTP side of incoming mode: `POST /mxdeliv`, proxied by nginx from port 8443.
//!
//! Other relays' transport mode posts mail here instead of talking SMTP to port 25. The
//! envelope is in headers (`X-MAIL-FROM`, one `X-MAIL-TO` per recipient), the raw
//! message is the body. It goes through the same [`Handler`] hooks as a message arriving
//! by SMTP, so the checks and the re-injection are exactly those of the SMTP listener;
//! only the framing differs. The answer body is the SMTP reply line.
//!
//! The listener is on loopback, so nginx is the only client: its `X-Real-IP` header
//! (set from `$remote_addr`, replacing any the sender sent) is the delivering relay's
//! address, the HTTP counterpart of Postfix's XFORWARD.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::address::{parse_path, parse_peer_addr};
use super::data;
use super::reply::Reply;
use super::smtp::server::{DRAIN_LIMIT, Limits};
use super::smtp::{Envelope, Handler};
use crate::shutdown::{Sessions, Shutdown};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Read/write timeout for headers and body (upstream: 60 s per connection).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Accept connections forever, one task each; HTTP/1.x (nginx's default upstream
/// protocol is 1.0) and HTTP/2. Size and recipient limits are the SMTP listener's.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, max_message_size: usize) {
    serve_until(listener, handler, max_message_size, Shutdown::never()).await;
}

/// [`serve`] until `shutdown`; then, as the SMTP listener does, stop accepting and let
/// the connections finish the request in flight (hyper's graceful shutdown: HTTP/1 closes
/// after the current response, HTTP/2 sends GOAWAY), at most [`DRAIN_LIMIT`].
pub async fn serve_until<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    max_message_size: usize,
    shutdown: Shutdown,
) {
    let limits = Limits::new(max_message_size);
    let sessions = Sessions::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                let guard = sessions.guard();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let handler = handler.clone();
                        let limits = limits.clone();
                        async move { Ok::<_, Infallible>(respond(&*handler, request, &limits).await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(IO_TIMEOUT);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    let mut closing = false;
                    let result = loop {
                        tokio::select! {
                            result = conn.as_mut() => break result,
                            () = shutdown.requested(), if !closing => {
                                closing = true;
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                    };
                    if let Err(e) = result {
                        log::debug!("HTTP connection from {peer}: {e}");
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
    drop(listener);
    log::info!("HTTP: not accepting any more, letting requests finish");
    match sessions.drained(DRAIN_LIMIT).await {
        0 => log::info!("HTTP: all connections finished"),
        n => log::warn!(
            "HTTP: {n} connections still open after {} s, cut",
            DRAIN_LIMIT.as_secs()
        ),
    }
}

async fn respond<H, B>(handler: &H, request: Request<B>, limits: &Limits) -> Response<Full<Bytes>>
where
    H: Handler,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (status, text) = mxdeliv(handler, request, limits).await;
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Status and body for one request.
pub async fn mxdeliv<H, B>(
    handler: &H,
    request: Request<B>,
    limits: &Limits,
) -> (StatusCode, String)
where
    H: Handler,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if request.uri().path() != "/mxdeliv" {
        return (StatusCode::NOT_FOUND, "Not Found".into());
    }
    if request.method() != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into());
    }
    let (parts, body) = request.into_parts();
    let envelope = match envelope(handler, &parts.headers, limits) {
        Ok(e) => e,
        Err(reply) => return refused(reply),
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_message_size as u64) {
        return too_big();
    }
    let collected = tokio::time::timeout(
        IO_TIMEOUT,
        Limited::new(body, limits.max_message_size).collect(),
    )
    .await;
    let raw = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_big(),
        Ok(Err(e)) => {
            log::debug!("/mxdeliv body: {e}");
            return (StatusCode::BAD_REQUEST, "500 Error reading message".into());
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "451 Timeout reading message".into(),
            );
        }
    };
    // The handlers work on data as SMTP transmits it; apply the same validity rules
    // (a bare CR stays invalid).
    let stuffed = data::stuff(&lf_to_crlf(&raw));
    if !data::is_valid(&stuffed) {
        return refused(Reply::invalid_data());
    }
    let client = client_address(&parts.headers);
    let reply = handler
        .data_from(
            Envelope {
                data: stuffed,
                ..envelope
            },
            client,
        )
        .await;
    if reply.is_positive() {
        (StatusCode::OK, reply.to_string())
    } else {
        refused(reply)
    }
}

/// An HTTP body is a file, not an SMTP stream: senders may have written LF line ends,
/// which SMTP (and the re-injection) needs as CRLF.
fn lf_to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The relay that connected to nginx; unknown unless nginx set exactly one valid address.
fn client_address(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let mut values = headers.get_all(REAL_IP).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok().and_then(parse_peer_addr),
        _ => None,
    }
}

/// The header nginx's `/mxdeliv` location sets to `$remote_addr`.
pub const REAL_IP: &str = "X-Real-IP";

fn refused(reply: Reply) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, reply.to_string())
}

fn too_big() -> (StatusCode, String) {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Reply::message_too_big().to_string(),
    )
}

/// The envelope from the headers, through the same hooks as `MAIL FROM` and `RCPT TO`.
fn envelope<H: Handler>(
    handler: &H,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Envelope, Reply> {
    let mail_from = match headers.get("X-MAIL-FROM").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => {
            parse_path(v).map_err(|()| Reply::new(500, "Invalid address in MAIL FROM"))?
        }
        Some(Err(_)) => return Err(Reply::new(500, "Invalid address in MAIL FROM")),
    };
    handler.mail_from(mail_from.as_deref())?;
    let mut rcpt_to = Vec::new();
    for value in headers.get_all("X-MAIL-TO") {
        let rcpt = match value.to_str().map(parse_path) {
            Ok(Ok(Some(addr))) => addr,
            _ => return Err(Reply::new(501, "5.1.3 Bad recipient address syntax")),
        };
        if rcpt_to.len() >= limits.max_recipients {
            return Err(Reply::new(452, "4.5.3 Error: too many recipients"));
        }
        handler.rcpt_to(&rcpt)?;
        rcpt_to.push(rcpt);
    }
    if rcpt_to.is_empty() {
        return Err(Reply::new(503, "5.5.1 Error: need RCPT command"));
    }
    Ok(Envelope {
        mail_from,
        rcpt_to,
        data: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what reaches the data hook and answers `250 OK`, or refuses one sender.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<Envelope>>,
    }

    impl Handler for Recorder {
        fn mail_from(&self, sender: Option<&str>) -> Result<(), Reply> {
            match sender {
                Some("blocked@x.example") => Err(Reply::new(450, "4.7.1 go away")),
                _ => Ok(()),
            }
        }

        async fn data(&self, envelope: Envelope) -> Reply {
            self.seen.lock().unwrap().push(envelope);
            Reply::ok()
        }
    }

    fn request(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    async fn call(handler: &Recorder, req: Request<Full<Bytes>>) -> (u16, String) {
        let (status, text) = mxdeliv(handler, req, &Limits::new(100)).await;
        (status.as_u16(), text)
    }

    const MSG: &str = "From: a@x.example\r\n\r\n.hi\r\n";

    #[tokio::test]
    async fn envelope_and_body_reach_the_handler() {
        let h = Recorder::default();
        let headers = [
            ("X-MAIL-FROM", "A@x.example"),
            ("X-MAIL-TO", "b@y.example"),
            ("X-MAIL-TO", "<c@y.example>"),
        ];
        assert_eq!(
            call(&h, request("POST", "/mxdeliv", &headers, MSG)).await,
            (200, "250 OK".into())
        );
        let seen = h.seen.lock().unwrap();
        assert_eq!(seen[0].mail_from.as_deref(), Some("a@x.example"));
        assert_eq!(seen[0].rcpt_to, ["b@y.example", "c@y.example"]);
        // Stuffed like SMTP DATA, so the handler can forward it verbatim.
        assert_eq!(seen[0].data, b"From: a@x.example\r\n\r\n..hi\r\n");
    }

    #[test]
    fn client_address_only_from_one_valid_header() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(REAL_IP, v.parse().unwrap());
            }
            map
        };
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(
            client_address(&headers(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(&headers(&["2001:db8::1"])),
            ip("2001:db8::1")
        );
        assert_eq!(client_address(&headers(&[])), None);
        assert_eq!(client_address(&headers(&["nginx.example"])), None);
        // Two values mean something other than nginx set it: trust neither.
        assert_eq!(
            client_address(&headers(&["203.0.113.7", "203.0.113.7"])),
            None
        );
    }

    #[test]
    fn line_ends() {
        assert_eq!(lf_to_crlf(b"a\nb\r\nc\n\n"), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(lf_to_crlf(b"\r\r\n"), b"\r\r\n");
    }

    #[tokio::test]
    async fn null_sender() {
        let h = Recorder::default();
        for from in [None, Some("")] {
            let mut headers = vec![("X-MAIL-TO", "b@y.example")];
            headers.extend(from.map(|f| ("X-MAIL-FROM", f)));
            assert_eq!(
                call(&h, request("POST", "/mxdeliv", &headers, MSG)).await.0,
                200
            );
        }
        assert!(h.seen.lock().unwrap().iter().all(|e| e.mail_from.is_none()));
    }

    #[tokio::test]
    async fn wrong_method_or_path() {
        let h = Recorder::default();
        let to = [("X-MAIL-TO", "b@y.example")];
        let got = call(&h, request("GET", "/mxdeliv", &to, "")).await;
        assert_eq!(got, (405, "Method Not Allowed".into()));
        let got = call(&h, request("POST", "/other", &to, MSG)).await;
        assert_eq!(got, (404, "Not Found".into()));
        assert!(h.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn refusals() {
        let h = Recorder::default();
        let to = ("X-MAIL-TO", "b@y.example");
        let big = "x".repeat(101);
        // headers, body, expected status and body
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u16, &'a str);
        let cases: &[Case] = &[
            (&[], MSG, 400, "503 5.5.1 Error: need RCPT command"),
            (
                &[("X-MAIL-TO", "nobody")],
                MSG,
                400,
                "501 5.1.3 Bad recipient address syntax",
            ),
            (
                &[("X-MAIL-FROM", "bad"), to],
                MSG,
                400,
                "500 Invalid address in MAIL FROM",
            ),
            (
                &[("X-MAIL-FROM", "blocked@x.example"), to],
                MSG,
                400,
                "450 4.7.1 go away",
            ),
            (&[to], "bare\rCR\r\n", 400, "500 Invalid DATA"),
            (&[to], "", 400, "500 Invalid DATA"),
            (&[to], &big, 413, "552 Message exceeds maximum size"),
        ];
        for (headers, body, status, text) in cases {
            let got = call(&h, request("POST", "/mxdeliv", headers, body)).await;
            assert_eq!(
                (got.0, got.1.as_str()),
                (*status, *text),
                "{headers:?} {body:?}"
            );
        }
        assert!(h.seen.lock().unwrap().is_empty());
    }
}

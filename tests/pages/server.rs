//! A static server on 127.0.0.1 for the built pages, with a log of every request.
//!
//! Not `chatmail-deploy webdev`: the self-signed home page fetches `/new`, which on a relay
//! is answered by chatmaild's CGI, and the log lets the test see every load the browser
//! attempted, failed ones included.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Server {
    pub port: u16,
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Server {
    /// Serves `files` (path below the web root, contents) and, if given, `new_json` as the
    /// body of `GET /new`, on an ephemeral port; runs until the test process ends.
    pub fn start(files: Vec<(String, Vec<u8>)>, new_json: Option<String>) -> Server {
        let mut routes: HashMap<String, (&'static str, Vec<u8>)> = files
            .into_iter()
            .map(|(path, bytes)| {
                let kind = content_type(&path);
                (format!("/{path}"), (kind, bytes))
            })
            .collect();
        if let Some(json) = new_json {
            routes.insert("/new".into(), ("application/json", json.into_bytes()));
        }
        let routes = Arc::new(routes);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (routes, log) = (routes.clone(), thread_log.clone());
                std::thread::spawn(move || {
                    if let Ok((path, status)) = answer(stream, &routes) {
                        log.lock().unwrap().push((path, status));
                    }
                });
            }
        });
        Server { port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The (path, status) of every request since the last call.
    pub fn take_log(&self) -> Vec<(String, u16)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Status and body of `GET path`, over a real connection like the browser's.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("HTTP head");
        let head = String::from_utf8_lossy(&resp[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, resp[split + 4..].to_vec())
    }
}

fn answer(
    stream: TcpStream,
    routes: &HashMap<String, (&'static str, Vec<u8>)>,
) -> std::io::Result<(String, u16)> {
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // read the whole head: closing a socket with unread input resets the connection, and
    // the browser would then report a failed load for a good answer
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = if path == "/" { "/index.html" } else { path };
    let mut stream = reader.into_inner();
    let status = match routes.get(path) {
        Some((kind, body)) => {
            let head = format!(
                "HTTP/1.0 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            200
        }
        None => {
            stream.write_all(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n")?;
            404
        }
    };
    Ok((target.to_string(), status))
}

/// The types nginx sends for these files on a relay.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

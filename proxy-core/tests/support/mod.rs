//! A `WeirProxy` served on a loopback port and a small HTTP/1.1 client, for tests that go
//! through real sockets.

// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use proxy_core::pingora::apps::ServerApp;
use proxy_core::pingora::protocols::l4::stream::Stream as L4Stream;
use proxy_core::pingora::protocols::{SocketDigest, Stream};
use proxy_core::pingora::server::configuration::ServerConf;
use proxy_core::WeirProxy;

/// A proxy listening on `127.0.0.1` (port 0) on its own thread and runtime; stops when dropped.
pub struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serve `proxy` as Pingora's HTTP app, the way the daemon's listeners do.
    pub fn start(proxy: WeirProxy) -> Served {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let conf = Arc::new(ServerConf::default());
                let app = Arc::new(proxy_core::pingora::proxy::http_proxy(&conf, proxy));
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let tcp = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                        _ = stopped.changed() => return,
                    };
                    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
                    let mut l4 = L4Stream::from(tcp);
                    proxy_core::pingora::protocols::GetSocketDigest::set_socket_digest(
                        &mut l4, digest,
                    );
                    let (app, shutdown) = (app.clone(), stopped.clone());
                    tokio::spawn(async move {
                        let mut io: Stream = Box::new(l4);
                        while let Some(next) = app.process_new(io, &shutdown).await {
                            io = next;
                        }
                    });
                }
            });
        });
        Served {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) with extra header lines and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, host: &str, path: &str, extra: &[&str]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

/// `GET` with extra header lines.
pub fn get(addr: SocketAddr, host: &str, path: &str, extra: &[&str]) -> Response {
    request(addr, "GET", host, path, extra)
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

//! The echo server: replies `200` with JSON `{server, method, path, host, headers, body_len}`,
//! plus `body` (the request body as text) when the body is non-empty UTF-8 of at most 1 MiB.
//! A `delay_ms=N` query parameter delays the reply by N milliseconds (for in-flight tests);
//! `status=N` replies with status N instead of 200 (an upstream's error).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Build the JSON reply for one request.
async fn reply(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let host = headers.get("host").cloned().unwrap_or_default();
    let delay_ms = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("delay_ms="))
        .and_then(|v| v.parse::<u64>().ok());
    // `status=NNN` answers with that status (an upstream's error, for error page tests).
    let status = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("status="))
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|v| hyper::StatusCode::from_u16(v).ok());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(ms) = delay_ms {
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(30_000))).await;
    }
    let mut json = serde_json::json!({
        "server": name,
        "method": method,
        "path": path,
        "host": host,
        "headers": headers,
        "body_len": body.len(),
    });
    if !body.is_empty() && body.len() <= 1 << 20 {
        if let Ok(text) = std::str::from_utf8(&body) {
            json["body"] = text.into();
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    if let Some(status) = status {
        *resp.status_mut() = status;
    }
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serve on `listener` until `stop` resolves. Each reply names the server `name`; `received`
/// counts requests as they arrive.
pub async fn serve(
    listener: TcpListener,
    name: String,
    received: Arc<AtomicUsize>,
    mut stop: oneshot::Receiver<()>,
) {
    let name: Arc<str> = name.into();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let name = name.clone();
        let received = received.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = name.clone();
                received.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, Infallible>(reply(&name, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// An echo server on its own thread; stops when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Start on `127.0.0.1` with a free port.
    pub fn start(name: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), name)
    }

    /// Start on `addr` (port 0 picks a free port).
    pub fn start_on(addr: SocketAddr, name: &str) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let name = name.to_string();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    serve(listener, name, counter, rx).await;
                });
            })?;
        Ok(EchoServer {
            addr,
            received,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far (counted when they arrive, before any delay).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

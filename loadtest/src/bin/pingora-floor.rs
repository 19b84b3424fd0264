//! `pingora-floor`: the smallest Pingora HTTP proxy, for the benchmark table. It forwards every
//! request to one upstream with no routing, no added headers, no metrics and no logging, on the
//! same Pingora version, allocator and listener settings as `weir`. Whatever it costs per request
//! is the floor under Weir's own work.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;

/// mimalloc, as in `weir`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "A bare Pingora proxy to one upstream (benchmark reference)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The upstream every request goes to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = pingora::server::configuration::ServerConf {
        threads: args.threads,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut app = http_proxy(
        &server.configuration,
        Floor {
            upstream: args.upstream,
        },
    );
    let mut options = pingora::apps::HttpServerOptions::default();
    options.keepalive_request_limit = Some(1000);
    app.server_options = Some(options);
    let mut service = pingora::services::listening::Service::new("floor".to_string(), app);
    service.add_listener(
        pingora::listeners::ListenerConfig::tcp(args.listen.to_string())
            .l4_buffer(pingora::listeners::L4BufferSettings::default().read(0)),
    );
    server.add_service(service);
    server.run_forever()
}

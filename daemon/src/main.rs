//! `weir`: the ingress controller daemon. Parses flags, loads the first configuration, and runs
//! the Pingora server with the proxy, the admin listener and the configuration source.

mod admin;
mod cli;
mod services;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use k8s_sync::{ManifestDir, SyncMetrics, Syncer};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use proxy_core::{ProxyMetrics, SnapshotHandle, WeirProxy};

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbosity);
    match run(cli) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 | 1 => "info",
        2 | 3 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},pingora_core=warn,pingora_proxy=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Labels ingress-nginx puts on every series it exports.
fn const_labels(cli: &Cli) -> HashMap<String, String> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    HashMap::from([
        ("controller_class".to_string(), cli.controller_class.clone()),
        ("controller_namespace".to_string(), env("POD_NAMESPACE")),
        ("controller_pod".to_string(), env("POD_NAME")),
    ])
}

fn run(cli: Cli) -> anyhow::Result<std::convert::Infallible> {
    let opts = cli.sync_options()?;
    let Some(manifests) = cli.manifests.clone() else {
        bail!("no configuration source: pass --manifests DIR (the Kubernetes API source is not available in this build)");
    };

    let registry = prometheus::Registry::new();
    let labels = const_labels(&cli);
    let proxy_metrics =
        ProxyMetrics::register(&registry, &labels).context("registering metrics")?;
    let sync_metrics = SyncMetrics::register(&registry, &labels).context("registering metrics")?;

    let handle = SnapshotHandle::new();
    let mut syncer = Syncer::new(opts, handle.clone(), Some(sync_metrics));
    let mut dir = ManifestDir::new(&manifests);
    let scan = dir.scan()?;
    syncer.apply(&scan.objects, &scan.errors);

    let http_addr = SocketAddr::new(cli.bind_address, cli.http_port);
    let admin_addr = SocketAddr::new(cli.healthz_host, cli.healthz_port);
    for addr in [http_addr, admin_addr] {
        // Pingora binds later, in its own threads; check now so a taken port is a clear error.
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    }

    let threads = cli
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(cli.shutdown_grace_period),
        graceful_shutdown_timeout_seconds: Some(cli.worker_shutdown_timeout),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        WeirProxy::new(handle.clone(), Some(proxy_metrics)),
        "weir proxy",
    );
    proxy.add_tcp(&http_addr.to_string());

    let mut admin = pingora::services::listening::Service::new(
        "weir admin".to_string(),
        admin::AdminApp {
            snapshot: handle,
            registry,
        },
    );
    admin.add_tcp(&admin_addr.to_string());
    admin.threads = Some(1);

    let watcher = pingora::services::background::background_service(
        "weir manifests",
        services::ManifestWatcher::new(dir, syncer),
    );

    tracing::info!(%http_addr, %admin_addr, manifests = %manifests.display(), threads, "weir starting");
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(watcher);
    server.run_forever()
}

//! `weir`: the ingress controller daemon. Parses flags, loads the first configuration, and runs
//! the Pingora server with the proxy, the admin listener and the configuration source.

mod admin;
mod cli;
mod limits;
mod services;
mod shutdown;
mod wait_shutdown;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use k8s_sync::{ManifestDir, SyncMetrics, Syncer};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use proxy_core::{
    EdgeApp, EdgeMetrics, ProxyMetrics, SnapshotHandle, SniResolver, TlsCert, WeirProxy,
};

use crate::cli::Cli;

/// mimalloc instead of glibc malloc: Pingora allocates and frees a ~15 KiB future per request,
/// which glibc serves from its slower bins; mimalloc's per-thread pages make that cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Some(args) = wait_shutdown::invoked() {
        return wait_shutdown::main(args);
    }
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

/// Where the configuration comes from.
enum Source {
    /// `--manifests DIR`.
    Files(std::path::PathBuf),
    /// The Kubernetes API.
    Api(Box<kube::Config>),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Files(d) => write!(f, "manifests {}", d.display()),
            Source::Api(c) => write!(f, "Kubernetes API {}", c.cluster_url),
        }
    }
}

/// Load the API client configuration now, so a bad kubeconfig is a clear error at start.
fn kube_config(cli: &Cli) -> anyhow::Result<kube::Config> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match &cli.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                    .await
                    .with_context(|| format!("using --kubeconfig {}", path.display()))
            }
            None => kube::Config::infer().await.context(
                "no Kubernetes API configuration (not in a cluster, no $KUBECONFIG or ~/.kube/config); pass --kubeconfig FILE or --manifests DIR",
            ),
        }
    })
}

/// The TLS acceptor of the HTTPS listener: TLS 1.2 and 1.3, ALPN h2 then http/1.1, and the
/// certificate chosen per SNI from the current snapshot at each handshake.
fn tls_acceptor(handle: &SnapshotHandle, fallback: &TlsCert) -> pingora::listeners::tls::Acceptor {
    pingora::tls::install_default_crypto_provider();
    let mut config = pingora::tls::ServerConfig::builder_with_protocol_versions(&[
        &pingora::tls::version::TLS13,
        &pingora::tls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(std::sync::Arc::new(SniResolver::new(
        handle.clone(),
        fallback,
    )));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's cipher preference (rustls: AEAD suites, forward secrecy only), as nginx's
    // ssl_prefer_server_ciphers.
    config.ignore_client_order = true;
    pingora::listeners::tls::Acceptor::from_server_config(std::sync::Arc::new(config))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "weir".into())
}

/// Bind a listener now, so that a taken port is a clear error before anything starts and port 0
/// gets its real port; the socket is handed to Pingora as it is (see [`services::Prebound`]).
fn bind(name: &'static str, addr: SocketAddr) -> anyhow::Result<services::BoundListener> {
    let socket =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound =
        services::BoundListener::new(socket).with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(listener = %name, addr = %bound.addr(), "listening");
    Ok(bound)
}

fn run(cli: Cli) -> anyhow::Result<std::convert::Infallible> {
    let mut opts = cli.sync_options()?;
    let http_socket = bind("http", SocketAddr::new(cli.bind_address, cli.http_port))?;
    let https_socket = bind("https", SocketAddr::new(cli.bind_address, cli.https_port))?;
    let admin_socket = bind("admin", SocketAddr::new(cli.healthz_host, cli.healthz_port))?;
    let (http_addr, https_addr, admin_addr) =
        (http_socket.addr(), https_socket.addr(), admin_socket.addr());
    // Redirects name the port actually bound (--https-port 0 picks one).
    opts.https_port = https_addr.port();
    let source = match &cli.manifests {
        Some(dir) => Source::Files(dir.clone()),
        None => Source::Api(Box::new(kube_config(&cli)?)),
    };

    let drain = shutdown::Drain::new(
        std::time::Duration::from_secs(cli.shutdown_grace_period),
        std::time::Duration::from_secs(cli.worker_shutdown_timeout),
    );
    let registry = prometheus::Registry::new();
    let labels = const_labels(&cli);
    let proxy_metrics =
        ProxyMetrics::register(&registry, &labels).context("registering metrics")?;
    let sync_metrics = SyncMetrics::register(&registry, &labels).context("registering metrics")?;
    // Access log lines go to stdout from their own thread; Weir's own logs go to stderr.
    let access_log = proxy_core::AccessLog::stdout(Some(
        proxy_core::AccessLog::dropped_counter(&registry).context("registering metrics")?,
    ))
    .context("starting the access log writer")?;

    let handle = SnapshotHandle::new();
    let syncer = Syncer::new(opts.clone(), handle.clone(), Some(sync_metrics));
    let sync_service: Box<dyn pingora::services::ServiceWithDependents> = match &source {
        Source::Files(dir) => {
            let mut syncer = syncer;
            let mut manifests = ManifestDir::new(dir);
            // Large files are parsed apart; the first configuration waits a little for them,
            // and takes in any still running at a later scan.
            let scan = manifests.scan_waiting(services::STARTUP_PARSE_WAIT)?;
            syncer.apply(&scan.objects, &scan.errors);
            Box::new(pingora::services::background::background_service(
                "weir manifests",
                drain.sync_service(services::ManifestWatcher::new(manifests, syncer)),
            ))
        }
        Source::Api(config) => {
            let pod_namespace = std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| config.default_namespace.clone());
            let identity = std::env::var("POD_NAME")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(hostname);
            let api_opts = k8s_sync::api::ApiOptions {
                watch_namespace: opts.watch_namespace.clone(),
                publish_service: cli
                    .publish_service
                    .as_deref()
                    .map(cli::parse_ns_name)
                    .transpose()?,
                publish_status_address: cli.publish_status_address.clone(),
                update_status: cli.update_status,
                configmap: opts.configmap.clone(),
                component: "weir-ingress-controller".into(),
            };
            let leader_metric = k8s_sync::leader::register_metric(&registry, &labels)
                .context("registering metrics")?;
            Box::new(pingora::services::background::background_service(
                "weir kubernetes",
                drain.sync_service(services::ApiSync::new(
                    (**config).clone(),
                    syncer,
                    api_opts,
                    k8s_sync::leader::LeaderConfig::new(
                        &pod_namespace,
                        &cli.election_id,
                        &identity,
                        cli.election_ttl,
                    ),
                    Some(leader_metric),
                )),
            ))
        }
    };

    let threads = cli
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The grace period and the wait for requests in flight happen in `drain` (Weir's
    // ShutdownSignalWatch), before Pingora shuts down; Pingora's own steps then take no time
    // (its runtime shutdown drops the tasks still running, it never waits for them).
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let edge_metrics = EdgeMetrics::register(&registry).context("registering metrics")?;
    let conn_table = proxy_core::ConnTable::new(limits::connection_fd_cap());
    let fallback_cert = TlsCert::fake();
    let listener = |name: &'static str,
                    tls: Option<pingora::listeners::tls::Acceptor>,
                    socket: services::BoundListener| {
        let mut app = pingora::proxy::http_proxy(
            &server.configuration,
            WeirProxy::new(handle.clone(), Some(proxy_metrics.clone()))
                .with_access_log(access_log.clone()),
        );
        let mut options = pingora::apps::HttpServerOptions::default();
        // `keep-alive-requests` is applied per request from the snapshot (proxy_core edge).
        options.keepalive_request_limit = None;
        // HTTP/2 without TLS (prior knowledge) on the plain listener, when asked for.
        options.h2c = tls.is_none() && cli.enable_h2c;
        app.server_options = Some(options);
        app.h2_options = Some(proxy_core::h2_server_options());
        let edge = EdgeApp::new(app, handle.clone(), tls, name, Some(edge_metrics.clone()))
            .with_conn_table(conn_table.clone());
        let endpoint = edge.listener(&socket.addr().to_string());
        let mut service = pingora::services::listening::Service::new(format!("weir {name}"), edge);
        service.add_listener(endpoint);
        services::Prebound::new(service, socket).stopped_by(drain.listeners_watch())
    };
    let http = listener("http", None, http_socket);
    let https = listener(
        "https",
        Some(tls_acceptor(&handle, &fallback_cert)),
        https_socket,
    );

    let mut admin = pingora::services::listening::Service::new(
        "weir admin".to_string(),
        admin::AdminApp {
            snapshot: handle,
            proxy_addr: admin::local_target(http_addr),
            registry,
            draining: drain.draining(),
        },
    );
    admin.add_tcp(&admin_addr.to_string());
    admin.threads = Some(1);
    let admin = services::Prebound::new(admin, admin_socket);

    tracing::info!(%http_addr, %admin_addr, source = %source, threads, "weir starting");
    server.add_service(http);
    server.add_service(https);
    server.add_service(admin);
    server.add_boxed_service(sync_service);
    server.run(pingora::server::RunArgs {
        shutdown_signal: Box::new(drain),
    });
    std::process::exit(0)
}

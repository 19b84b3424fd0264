//! Command-line flags, named as ingress-nginx names them where it has them.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use k8s_sync::{ObjectRef, SyncOptions};

/// Weir: a Kubernetes ingress controller on a Pingora data plane, a drop-in for ingress-nginx.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "weir",
    version,
    about,
    long_about = None,
    args_override_self = true,
    after_help = "The container's preStop hook: `weir wait-shutdown` (or a link to weir named \
                  `wait-shutdown`) sends SIGTERM to the weir in the container and waits until it \
                  has exited; see `weir wait-shutdown --help`."
)]
pub struct Cli {
    /// Read Kubernetes manifests (Ingress, Service, EndpointSlice, IngressClass, ...) from this
    /// folder instead of the API server, and apply changes to it without a restart.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Kubeconfig file for API mode (default: $KUBECONFIG or ~/.kube/config, then the in-cluster config).
    #[arg(long, value_name = "FILE", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,

    /// Service (namespace/name) whose load-balancer address is written to the status of every
    /// served Ingress (the SLB/ELB in front of the controller).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub publish_service: Option<String>,

    /// Comma-separated addresses written to Ingress status; takes precedence over --publish-service.
    #[arg(long, value_name = "ADDRESSES", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,

    /// Write Ingress status (API mode, leader only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_name = "BOOL")]
    pub update_status: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "ingress-nginx-leader")]
    pub election_id: String,

    /// How long a leader's Lease lasts without renewal (e.g. 30s, 1m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub election_ttl: std::time::Duration,

    /// Prefix of the annotations read from Ingresses (`PREFIX/rewrite-target`, ...).
    #[arg(
        long,
        default_value = "nginx.ingress.kubernetes.io",
        value_name = "PREFIX"
    )]
    pub annotations_prefix: String,

    /// Address the HTTP and HTTPS listeners bind to.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,

    /// Port of the HTTP listener (0: any free port; every listener logs its address).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,

    /// Port of the HTTPS listener.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,

    /// Port serving /healthz (200 once the first configuration is loaded) and /metrics.
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,

    /// Address the health and metrics listener binds to.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub healthz_host: IpAddr,

    /// Value of the legacy `kubernetes.io/ingress.class` annotation this controller serves.
    #[arg(long, default_value = "nginx")]
    pub ingress_class: String,

    /// IngressClasses whose `spec.controller` equals this are served.
    #[arg(long, default_value = "k8s.io/ingress-nginx")]
    pub controller_class: String,

    /// Also serve the IngressClass whose name is --ingress-class, whatever its controller.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    pub ingress_class_by_name: bool,

    /// Serve Ingresses that name no ingress class.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    pub watch_ingress_without_class: bool,

    /// Only watch objects in this namespace (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Service (namespace/name) that receives requests no rule matches, instead of the built-in 404.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub default_backend_service: Option<String>,

    /// ConfigMap (namespace/name) with global options (proxy timeouts and retries).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub configmap: Option<String>,

    /// Secret (namespace/name, type kubernetes.io/tls) served for unknown SNI and for TLS hosts
    /// without a usable certificate (default: a self-signed "Fake Certificate").
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub default_ssl_certificate: Option<String>,

    /// Accept HTTP/2 without TLS (h2c, prior knowledge) on the HTTP port, next to HTTP/1.1.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_name = "BOOL")]
    pub enable_h2c: bool,

    /// Worker threads of the proxy (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<usize>,

    /// Seconds after SIGTERM during which Weir keeps accepting and serving while /healthz
    /// answers 503 (time for the load balancer to take the node out); then listeners stop.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub shutdown_grace_period: u64,

    /// Seconds requests in flight get to finish once the listeners have stopped; what is still
    /// open then is closed and Weir exits.
    #[arg(long, default_value_t = 240, value_name = "SECONDS")]
    pub worker_shutdown_timeout: u64,

    /// Log verbosity as ingress-nginx's --v: 0-1 info, 2-3 debug, 4+ trace (RUST_LOG overrides).
    #[arg(long = "v", default_value_t = 1, value_name = "LEVEL")]
    pub verbosity: u8,
}

impl Cli {
    /// Check flag combinations and build the sync options.
    pub fn sync_options(&self) -> anyhow::Result<SyncOptions> {
        let default_backend_service = self
            .default_backend_service
            .as_deref()
            .map(parse_ns_name)
            .transpose()
            .context("--default-backend-service")?;
        if self.ingress_class.is_empty() {
            bail!("--ingress-class must not be empty");
        }
        if self.controller_class.is_empty() {
            bail!("--controller-class must not be empty");
        }
        let ports = [
            ("--http-port", self.http_port),
            ("--https-port", self.https_port),
            ("--healthz-port", self.healthz_port),
        ];
        // Port 0 asks for any free port (the bound address is logged: `listening addr=…`).
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb && *pa != 0 {
                    bail!("{a} and {b} must differ (both are {pa})");
                }
            }
        }
        let configmap = self
            .configmap
            .as_deref()
            .map(parse_ns_name)
            .transpose()
            .context("--configmap")?;
        let default_ssl_certificate = self
            .default_ssl_certificate
            .as_deref()
            .map(parse_ns_name)
            .transpose()
            .context("--default-ssl-certificate")?;
        if let Some(p) = &self.publish_service {
            parse_ns_name(p).context("--publish-service")?;
        }
        if self.election_id.is_empty() {
            bail!("--election-id must not be empty");
        }
        let annotations_prefix = self.annotations_prefix.trim_end_matches('/');
        if annotations_prefix.is_empty() || annotations_prefix.contains(char::is_whitespace) {
            bail!(
                "--annotations-prefix must be a non-empty prefix without spaces, got {:?}",
                self.annotations_prefix
            );
        }
        Ok(SyncOptions {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            ingress_class_by_name: self.ingress_class_by_name,
            watch_ingress_without_class: self.watch_ingress_without_class,
            watch_namespace: self.watch_namespace.clone().filter(|n| !n.is_empty()),
            default_backend_service,
            configmap,
            default_ssl_certificate,
            https_port: self.https_port,
            annotations_prefix: annotations_prefix.to_string(),
        })
    }
}

/// Parse a Go-style duration with a unit: `500ms`, `30s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("expected a duration like 30s, got {s:?}"))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => return Err(format!("expected a duration like 30s, got {s:?}")),
    };
    if d.is_zero() {
        return Err("duration must be positive".into());
    }
    Ok(d)
}

/// Parse `namespace/name`.
pub fn parse_ns_name(s: &str) -> anyhow::Result<ObjectRef> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => bail!("expected namespace/name, got {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_ingress_nginx() {
        let cli = Cli::try_parse_from(["weir", "--manifests", "conf"]).unwrap();
        assert_eq!(
            (cli.http_port, cli.https_port, cli.healthz_port),
            (80, 443, 10254)
        );
        let o = cli.sync_options().unwrap();
        assert_eq!(o.ingress_class, "nginx");
        assert_eq!(o.controller_class, "k8s.io/ingress-nginx");
        assert!(!o.watch_ingress_without_class);
    }

    #[test]
    fn boolean_flags_take_both_forms() {
        let a = Cli::try_parse_from(["weir", "--watch-ingress-without-class"]).unwrap();
        let b = Cli::try_parse_from(["weir", "--watch-ingress-without-class=true"]).unwrap();
        let c = Cli::try_parse_from(["weir", "--watch-ingress-without-class=false"]).unwrap();
        assert!(a.watch_ingress_without_class && b.watch_ingress_without_class);
        assert!(!c.watch_ingress_without_class);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["weir", "--http-port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["weir", "--bind-address", "nowhere"]).is_err());
        let same =
            Cli::try_parse_from(["weir", "--http-port", "8080", "--healthz-port", "8080"]).unwrap();
        assert!(same
            .sync_options()
            .unwrap_err()
            .to_string()
            .contains("must differ"));
        let any = Cli::try_parse_from(["weir", "--http-port", "0", "--healthz-port", "0"]).unwrap();
        assert!(
            any.sync_options().is_ok(),
            "port 0 (any free port) may repeat"
        );
        let dbs = Cli::try_parse_from(["weir", "--default-backend-service", "nons"]).unwrap();
        assert!(format!("{:#}", dbs.sync_options().unwrap_err()).contains("namespace/name"));
    }
}

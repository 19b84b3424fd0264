//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: every replica
//! serves traffic, only the leader writes Ingress status.
//!
//! Expiry is judged by when this replica last *observed* the Lease record change (not by the
//! holder's clock), so clock skew between nodes does not matter. A leader that cannot renew
//! within the renew deadline, or finds the Lease taken, steps down at once. On shutdown the
//! leader releases the Lease so another replica takes over without waiting for expiry.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::sync::watch;

/// What the rest of the controller needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderState {
    /// Whether this replica currently holds the Lease.
    pub is_leader: bool,
}

/// Lease parameters.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the controller's own namespace).
    pub namespace: String,
    /// Lease name (`--election-id`).
    pub name: String,
    /// This replica's identity (the Pod name).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps leading while renewals fail.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// A Lease `name` in `namespace` held for `ttl` (ingress-nginx's `--election-ttl`, 30 s by
    /// default); as ingress-nginx, renewals are tried every `ttl / 4` and given up after `ttl / 2`.
    pub fn new(namespace: &str, name: &str, identity: &str, ttl: Duration) -> Self {
        LeaderConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: ttl,
            renew_deadline: ttl / 2,
            retry_period: (ttl / 4).max(Duration::from_millis(200)),
        }
    }
}

/// `nginx_ingress_controller_leader_election_status{name}`.
pub fn register_metric(
    registry: &Registry,
    const_labels: &std::collections::HashMap<String, String>,
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(
        Opts::new(
            "leader_election_status",
            "Gauge reporting status of the leader election, 0 indicates follower, 1 indicates leader.",
        )
        .namespace(proxy_core::METRICS_NAMESPACE)
        .const_labels(const_labels.clone()),
        &["name"],
    )?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Takes part in the election until `shutdown` turns true, publishing the state on `tx`.
pub async fn run(
    client: Client,
    cfg: LeaderConfig,
    tx: watch::Sender<LeaderState>,
    metric: Option<IntGaugeVec>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<(String, Instant)> = None;
    let mut last_renew: Option<Instant> = None;
    let set = |leader: bool| {
        if tx.borrow().is_leader != leader {
            tracing::info!(lease = %cfg.name, identity = %cfg.identity, leader, "leadership changed");
        }
        tx.send_if_modified(|state| {
            let changed = state.is_leader != leader;
            state.is_leader = leader;
            changed
        });
        if let Some(m) = &metric {
            m.with_label_values(&[&cfg.name]).set(i64::from(leader));
        }
    };
    set(false);
    loop {
        match try_acquire_or_renew(&api, &cfg, &mut observed).await {
            Ok(true) => {
                last_renew = Some(Instant::now());
                set(true);
            }
            Ok(false) => set(false),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "leader election: API call failed");
                if last_renew.is_none_or(|t| t.elapsed() > cfg.renew_deadline) {
                    set(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = shutdown.changed() => {
                if tx.borrow().is_leader {
                    set(false);
                    release(&api, &cfg).await;
                }
                return;
            }
        }
    }
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaderConfig,
    observed: &mut Option<(String, Instant)>,
) -> kube::Result<bool> {
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = format!("{holder}|{:?}", spec.renew_time);
    match observed {
        Some((r, _)) if *r == record => {}
        _ => *observed = Some((record, Instant::now())),
    }
    let duration = spec
        .lease_duration_seconds
        .map_or(cfg.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
    let expired = observed
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() > duration);
    let ours = holder == cfg.identity;
    if !(ours || holder.is_empty() || expired) {
        return Ok(false);
    }
    let mut next = lease.clone();
    next.spec = Some(LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs),
        acquire_time: if ours {
            spec.acquire_time.clone()
        } else {
            Some(now())
        },
        renew_time: Some(now()),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaderConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "released leadership"),
        Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "could not release the lease"),
    }
}

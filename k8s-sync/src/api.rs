//! API mode: kube-rs reflectors on IngressClass, Ingress, Service, EndpointSlice, Secret and
//! ConfigMap (the `--configmap` and the ConfigMaps of headers) feed the same [`Syncer`] as file
//! mode.
//!
//! - Nothing is published until every reflector has listed once (so `/healthz` turns ready only
//!   after the first complete sync).
//! - Changes are debounced and rebuilt into one snapshot.
//! - A broken watch (API server down, 410 Expired) is retried with backoff by kube-runtime; the
//!   reflector stores keep their contents meanwhile, so the running snapshot never empties.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    Ingress, IngressClass, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};

use crate::leader::LeaderState;
use crate::objects::ObjectRef;
use crate::objects::ObjectSet;
use crate::sync::Syncer;

/// How long to wait for more changes before rebuilding.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What API mode does besides routing.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// `--watch-namespace`: namespaced kinds are watched only there.
    pub watch_namespace: Option<String>,
    /// `--publish-service`: copy this Service's load-balancer address into Ingress status.
    pub publish_service: Option<ObjectRef>,
    /// `--publish-status-address`: static addresses (IPs or hostnames) for Ingress status.
    pub publish_status_address: Vec<String>,
    /// `--update-status`: write Ingress status at all.
    pub update_status: bool,
    /// `--configmap`: the ConfigMap of global options, watched by name.
    pub configmap: Option<ObjectRef>,
    /// Name of this controller, the `source.component` of its Events.
    pub component: String,
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Start a reflector for one kind; `changed` is notified on every event.
fn reflect<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&Default::default()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, config).backoff(WatchBackoff::default()),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if failing {
                        tracing::info!(%kind, "watch recovered");
                        failing = false;
                    }
                    changed.notify_one();
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(%kind, error = %e, "watch failed, retrying with backoff; serving the last good configuration");
                        failing = true;
                    }
                }
            }
        }
    });
    store
}

/// Retry delays for broken watches: 250 ms doubling to 5 s, with jitter, reset on success.
/// Shorter than kube-runtime's default (up to 30 s) so an API server restart is caught quickly.
#[derive(Default)]
struct WatchBackoff {
    attempt: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = Duration::from_millis(250) * 2u32.saturating_pow(self.attempt.min(5));
        self.attempt = self.attempt.saturating_add(1);
        let base = base.min(Duration::from_secs(5));
        // Up to 25% jitter so replicas do not reconnect in lockstep.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Some(base + base / 4 * (nanos % 1000) / 1000)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Every reflector store.
struct Stores {
    classes: Store<IngressClass>,
    ingresses: Store<Ingress>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// With `--configmap`, the ConfigMaps of the watched namespaces: the `--configmap` and the
    /// ones it and the annotations name (`add-headers`, `proxy-set-headers`,
    /// `custom-headers`). Without it no ConfigMap is read (`custom-headers` needs the
    /// ConfigMap's `global-allowed-response-headers`), so no permission on ConfigMaps is needed.
    config_maps: Option<Store<ConfigMap>>,
    /// The `--configmap` by name, when it lives outside `--watch-namespace`.
    config_map: Option<Store<ConfigMap>>,
}

impl Stores {
    fn start(
        client: &Client,
        ns: Option<&str>,
        configmap: Option<&ObjectRef>,
        changed: &Arc<Notify>,
    ) -> Stores {
        let all = watcher::Config::default();
        Stores {
            classes: reflect(Api::all(client.clone()), all.clone(), changed.clone()),
            ingresses: reflect(api_for(client, ns), all.clone(), changed.clone()),
            services: reflect(api_for(client, ns), all.clone(), changed.clone()),
            slices: reflect(
                api_for(client, ns),
                all.clone().labels(crate::objects::SERVICE_NAME_LABEL),
                changed.clone(),
            ),
            secrets: reflect(api_for(client, ns), all.clone(), changed.clone()),
            config_maps: configmap
                .map(|_| reflect(api_for(client, ns), all.clone(), changed.clone())),
            config_map: configmap
                .filter(|c| ns.is_some_and(|n| n != c.namespace))
                .map(|c| {
                    reflect(
                        Api::namespaced(client.clone(), &c.namespace),
                        all.fields(&format!("metadata.name={}", c.name)),
                        changed.clone(),
                    )
                }),
        }
    }

    async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.classes.wait_until_ready(),
            self.ingresses.wait_until_ready(),
            self.services.wait_until_ready(),
            self.slices.wait_until_ready(),
            self.secrets.wait_until_ready(),
        );
        for cm in self.config_maps.iter().chain(&self.config_map) {
            let _ = cm.wait_until_ready().await;
        }
    }

    /// The stores' objects, shared with the stores (nothing is copied). Objects from the API
    /// server are complete: they have a namespace and no `stringData`.
    fn objects(&self) -> ObjectSet {
        fn into_map<K: Resource>(items: Vec<Arc<K>>) -> BTreeMap<String, Arc<K>> {
            items
                .into_iter()
                .map(|o| (crate::objects::key_of(o.meta()), o))
                .collect()
        }
        ObjectSet {
            ingresses: into_map(self.ingresses.state()),
            ingress_classes: into_map(self.classes.state()),
            services: into_map(self.services.state()),
            endpoint_slices: into_map(self.slices.state()),
            secrets: into_map(self.secrets.state()),
            config_maps: {
                let mut maps = BTreeMap::new();
                for c in self.config_maps.iter().chain(&self.config_map) {
                    maps.extend(into_map(c.state()));
                }
                maps
            },
        }
    }
}

/// Run API mode until `shutdown` turns true: watch, rebuild on change, publish status while
/// `leader` says so, and record Events for rejected or partially applied Ingresses.
pub async fn run(
    client: Client,
    mut syncer: Syncer,
    opts: ApiOptions,
    leader: watch::Receiver<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let changed = Arc::new(Notify::new());
    let stores = Stores::start(
        &client,
        opts.watch_namespace.as_deref(),
        opts.configmap.as_ref(),
        &changed,
    );
    // The publish Service may live outside --watch-namespace: watch it on its own.
    let publish: Option<Store<Service>> = opts.publish_service.as_ref().map(|svc| {
        reflect(
            Api::namespaced(client.clone(), &svc.namespace),
            watcher::Config::default().fields(&format!("metadata.name={}", svc.name)),
            changed.clone(),
        )
    });
    tokio::select! {
        _ = stores.wait_ready() => {}
        _ = shutdown.changed() => return,
    }
    tracing::info!("initial sync complete");
    let mut status = StatusWriter::new(client.clone(), opts.clone());
    let events = EventRecorder::new(client.clone(), opts.component.clone());
    let mut leader = leader;
    loop {
        let objects = stores.objects();
        let report = syncer.apply(&objects, &[]);
        for finding in &report.news {
            let (Some(rejected), Some(ing)) = (
                finding.ingress_event(),
                objects.ingresses.get(&finding.subject),
            ) else {
                continue;
            };
            events
                .record(
                    ing,
                    if rejected { "Rejected" } else { "Warning" },
                    &finding.message,
                )
                .await;
        }
        let served: HashSet<String> = report.served_keys.into_iter().collect();
        if leader.borrow().is_leader {
            let publish_svc = publish.as_ref().and_then(|p| p.state().into_iter().next());
            if publish.is_some() && publish_svc.is_none() {
                tracing::debug!("publish Service not found (yet); Ingress status left as is");
            }
            status
                .sync(&objects, publish_svc.as_deref(), &served, &leader)
                .await;
        }
        // Wait for a change (or a leadership change), then let a burst of changes settle.
        tokio::select! {
            _ = changed.notified() => {}
            r = leader.changed() => { if r.is_err() { return; } }
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// Writes `status.loadBalancer.ingress` of served Ingresses.
struct StatusWriter {
    client: Client,
    opts: ApiOptions,
    /// Ingresses this process wrote an address to (cleared when they stop being served).
    written: HashSet<String>,
}

impl StatusWriter {
    fn new(client: Client, opts: ApiOptions) -> Self {
        StatusWriter {
            client,
            opts,
            written: HashSet::new(),
        }
    }

    /// The addresses Ingresses should show, or `None` when status is not managed (or the
    /// publish Service is not known yet: never clear status because of a missing object).
    fn desired(&self, publish: Option<&Service>) -> Option<Vec<IngressLoadBalancerIngress>> {
        if !self.opts.update_status {
            return None;
        }
        // As ingress-nginx: static addresses win over the publish Service.
        if !self.opts.publish_status_address.is_empty() {
            let mut out: Vec<_> = self
                .opts
                .publish_status_address
                .iter()
                .cloned()
                .map(address)
                .collect();
            sort_addresses(&mut out);
            return Some(out);
        }
        self.opts.publish_service.as_ref()?;
        let service = publish?;
        let mut out: Vec<IngressLoadBalancerIngress> = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|i| IngressLoadBalancerIngress {
                ip: i.ip,
                hostname: i.hostname,
                ports: None,
            })
            .collect();
        // externalIPs of the Service are published too.
        for ip in service
            .spec
            .as_ref()
            .and_then(|s| s.external_ips.clone())
            .unwrap_or_default()
        {
            if !out.iter().any(|a| a.ip.as_deref() == Some(ip.as_str())) {
                out.push(address(ip));
            }
        }
        sort_addresses(&mut out);
        Some(out)
    }

    async fn sync(
        &mut self,
        objects: &ObjectSet,
        publish: Option<&Service>,
        served: &HashSet<String>,
        leader: &watch::Receiver<LeaderState>,
    ) {
        let Some(desired) = self.desired(publish) else {
            return;
        };
        for (key, ing) in &objects.ingresses {
            // Leadership can be lost while writing: stop at once.
            if !leader.borrow().is_leader {
                return;
            }
            let current = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.clone())
                .unwrap_or_default();
            let want = if served.contains(key) {
                desired.clone()
            } else if self.written.contains(key) {
                // No longer ours: remove the address this controller wrote.
                Vec::new()
            } else {
                continue;
            };
            if current == want {
                if want.is_empty() {
                    self.written.remove(key);
                }
                continue;
            }
            let (Some(ns), Some(name)) = (
                ing.metadata.namespace.as_deref(),
                ing.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let status = IngressStatus {
                load_balancer: Some(IngressLoadBalancerStatus {
                    ingress: Some(want.clone()),
                }),
            };
            let patch = serde_json::json!({ "status": status });
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(ingress = %key, addresses = ?want.iter().map(show).collect::<Vec<_>>(), "updated Ingress status");
                    if want.is_empty() {
                        self.written.remove(key);
                    } else {
                        self.written.insert(key.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(ingress = %key, error = %e, "could not update Ingress status")
                }
            }
        }
    }
}

fn address(a: String) -> IngressLoadBalancerIngress {
    if a.parse::<std::net::IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(a),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(a),
            ..Default::default()
        }
    }
}

fn show(a: &IngressLoadBalancerIngress) -> String {
    a.ip.clone()
        .or_else(|| a.hostname.clone())
        .unwrap_or_default()
}

fn sort_addresses(v: &mut [IngressLoadBalancerIngress]) {
    v.sort_by_key(show);
}

/// Records core/v1 Events on Ingresses.
struct EventRecorder {
    client: Client,
    component: String,
}

impl EventRecorder {
    fn new(client: Client, component: String) -> Self {
        EventRecorder { client, component }
    }

    async fn record(&self, ing: &Ingress, reason: &str, message: &str) {
        let Some(ns) = ing.metadata.namespace.as_deref() else {
            return;
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("networking.k8s.io/v1".into()),
                kind: Some("Ingress".into()),
                name: Some(name),
                namespace: Some(ns.to_string()),
                uid: ing.metadata.uid.clone(),
                resource_version: ing.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some("Warning".into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(
                std::env::var("POD_NAME").unwrap_or_else(|_| self.component.clone()),
            ),
            action: Some("Sync".into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(error = %e, "could not record an Event");
        }
    }
}

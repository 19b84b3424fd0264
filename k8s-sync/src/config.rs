//! Global options from the ConfigMap named by `--configmap` (ingress-nginx's keys and defaults).
//!
//! Supported keys: `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout` (seconds,
//! optionally with an `s` suffix), `proxy-next-upstream-tries`, `ssl-redirect`, `hsts`,
//! `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`, `use-proxy-protocol`,
//! `use-forwarded-headers`, `forwarded-for-header`, `compute-full-forwarded-for`,
//! `proxy-real-ip-cidr`, `proxy-body-size`, `client-body-buffer-size`, `proxy-request-buffering`,
//! `proxy-next-upstream`, `proxy-next-upstream-timeout`, `retry-non-idempotent`, the connection
//! limits (`keep-alive`, `keep-alive-requests`, `client-header-timeout`, `client-body-timeout`,
//! `client-header-buffer-size`, `large-client-header-buffers`, `max-worker-connections`), compression (`use-gzip`, `gzip-*`, `enable-brotli`, `brotli-*`),
//! headers (`add-headers`, `proxy-set-headers`, `hide-headers`,
//! `global-allowed-response-headers`), `custom-http-errors`, the access log
//! (`log-format-upstream`, `log-format-escape-*`, `disable-access-log`, `skip-access-log-urls`,
//! `enable-access-log-for-default-backend`), global external authentication (`global-auth-*`,
//! `no-auth-locations`),
//! the limits (`limit-req-status-code`,
//! `limit-conn-status-code`, `limit-rate`, `limit-rate-after`), and
//! `ssl-protocols` / `use-http2` / `server-tokens` at their defaults. A bad value keeps
//! the default for that key and is reported; a key Weir does not implement yet is reported once.

mod access_log;
mod compression;
mod global_auth;
mod headers;
mod limits;

pub use global_auth::GlobalAuth;
pub(crate) use headers::object_ref;
pub use headers::HeaderKeys;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use proxy_core::{parse_cidrs, RoutePolicy, ServerPolicy};

/// The global options Weir applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// Defaults for every route.
    pub policy: RoutePolicy,
    /// `ssl-redirect`: redirect plain HTTP to HTTPS on hosts with TLS (default true).
    pub ssl_redirect: bool,
    /// Listener-wide options (PROXY protocol, client address, HSTS).
    pub server: ServerPolicy,
    /// Header and error page keys, resolved against other objects at each build.
    pub headers: HeaderKeys,
    /// `global-auth-url` and its companions, `no-auth-locations`.
    pub global_auth: GlobalAuth,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            policy: RoutePolicy::default(),
            ssl_redirect: true,
            server: ServerPolicy {
                hsts: Some(hsts_value(31_536_000, true, false)),
                access_log: Some(proxy_core::AccessLogConfig::default()),
                ..ServerPolicy::default()
            },
            headers: HeaderKeys::default(),
            global_auth: GlobalAuth::default(),
        }
    }
}

fn hsts_value(max_age: u64, include_subdomains: bool, preload: bool) -> String {
    let mut v = format!("max-age={max_age}");
    if include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if preload {
        v.push_str("; preload");
    }
    v
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected \"true\" or \"false\", got {v:?}")),
    }
}

/// A ConfigMap key that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key.
    pub key: String,
    /// Why.
    pub message: String,
}

fn seconds(v: &str) -> Result<Duration, String> {
    crate::annotations::upstream::timeout(v)
}

impl GlobalConfig {
    /// Read the options; problems are returned next to a config that uses the defaults for them.
    pub fn from_config_map(cm: Option<&ConfigMap>) -> (GlobalConfig, Vec<ConfigProblem>) {
        let mut cfg = GlobalConfig::default();
        let mut problems = Vec::new();
        let Some(data) = cm.and_then(|c| c.data.as_ref()) else {
            return (cfg, problems);
        };
        let (mut hsts, mut max_age, mut subdomains, mut preload) =
            (true, 31_536_000u64, true, false);
        let mut compression = compression::CompressionKeys::default();
        let mut access_log = access_log::AccessLogKeys::default();
        let mut global_auth = global_auth::GlobalAuthKeys::default();
        let mut limit_keys = limits::LimitKeys::default();
        for (key, value) in data {
            let result = match key.as_str() {
                k if compression::KEYS.contains(&k) => compression.parse(k, value),
                k if headers::KEYS.contains(&k) => cfg.headers.parse(k, value),
                k if access_log::KEYS.contains(&k) => access_log.parse(k, value),
                k if global_auth::KEYS.contains(&k) => global_auth.parse(k, value),
                k if limits::KEYS.contains(&k) => {
                    limit_keys.parse(k, value, &mut cfg.server.limit_status)
                }
                "ssl-redirect" => boolean(value).map(|b| cfg.ssl_redirect = b),
                "hsts" => boolean(value).map(|b| hsts = b),
                "hsts-include-subdomains" => boolean(value).map(|b| subdomains = b),
                "hsts-preload" => boolean(value).map(|b| preload = b),
                "hsts-max-age" => value
                    .trim()
                    .parse::<u64>()
                    .map(|n| max_age = n)
                    .map_err(|_| format!("expected a number of seconds, got {value:?}")),
                "use-proxy-protocol" => boolean(value).map(|b| cfg.server.proxy_protocol = b),
                "use-forwarded-headers" => {
                    boolean(value).map(|b| cfg.server.client_ip.use_forwarded_headers = b)
                }
                "compute-full-forwarded-for" => {
                    boolean(value).map(|b| cfg.server.client_ip.compute_full_forwarded_for = b)
                }
                "forwarded-for-header" => match value.trim() {
                    v if !v.is_empty() && http_token(v) => {
                        cfg.server.client_ip.forwarded_for_header = v.to_ascii_lowercase();
                        Ok(())
                    }
                    _ => Err(format!("expected a header name, got {value:?}")),
                },
                "proxy-real-ip-cidr" => parse_cidrs(value)
                    .map(|c| cfg.server.client_ip.trusted = c)
                    .map_err(|e| {
                        // Fail closed: a typo must not make every peer trusted.
                        cfg.server.client_ip.trusted = Vec::new();
                        format!("{e}; no proxy is trusted until it is fixed")
                    }),
                "http-redirect-code" => match value.trim().parse::<u16>() {
                    Ok(c @ (301 | 302 | 307 | 308)) => {
                        cfg.server.http_redirect_code = http::StatusCode::from_u16(c).ok();
                        Ok(())
                    }
                    _ => Err(format!(
                        "expected 301, 302, 307 or 308, got {value:?}; 308 is used"
                    )),
                },
                "use-port-in-redirects" => boolean(value).map(|b| cfg.server.port_in_redirects = b),
                "ssl-protocols" => {
                    let mut words: Vec<&str> = value.split_whitespace().collect();
                    words.sort_unstable();
                    if words == ["TLSv1.2", "TLSv1.3"] {
                        Ok(())
                    } else {
                        Err(format!(
                            "only \"TLSv1.2 TLSv1.3\" is supported (the default), got {value:?}"
                        ))
                    }
                }
                "use-http2" => boolean(value).and_then(|b| {
                    if b {
                        Ok(())
                    } else {
                        Err(
                            "HTTP/2 is always offered over TLS; \"false\" is not supported yet"
                                .into(),
                        )
                    }
                }),
                "server-tokens" => boolean(value).and_then(|b| {
                    if b {
                        Err(
                            "Weir never names its server or version; \"true\" is not supported"
                                .into(),
                        )
                    } else {
                        Ok(())
                    }
                }),
                "proxy-connect-timeout" => {
                    seconds(value).map(|d| cfg.policy.upstream.connect_timeout = d)
                }
                "proxy-read-timeout" => {
                    seconds(value).map(|d| cfg.policy.upstream.read_timeout = d)
                }
                "proxy-send-timeout" => {
                    seconds(value).map(|d| cfg.policy.upstream.send_timeout = d)
                }
                "proxy-next-upstream-tries" => crate::annotations::upstream::tries(value)
                    .map(|n| cfg.policy.upstream.next_upstream_tries = n),
                "proxy-next-upstream" => crate::annotations::upstream::next_upstream(value)
                    .map(|n| cfg.policy.upstream.next_upstream = n),
                "proxy-next-upstream-timeout" => {
                    crate::annotations::upstream::next_upstream_timeout(value)
                        .map(|t| cfg.policy.upstream.next_upstream_timeout = t)
                }
                "retry-non-idempotent" => {
                    boolean(value).map(|b| cfg.policy.upstream.retry_non_idempotent = b)
                }
                "proxy-body-size" => crate::annotations::body::max_body_size(value)
                    .map(|n| cfg.policy.body.max_size = n),
                "client-body-buffer-size" => {
                    crate::annotations::body::size(value).map(|n| cfg.policy.body.buffer_size = n)
                }
                "proxy-request-buffering" => crate::annotations::body::on_off(value)
                    .map(|b| cfg.policy.body.request_buffering = b),
                key if crate::config_limits::KEYS.contains(&key) => {
                    crate::config_limits::apply(key, value, &mut cfg.server.conn)
                }
                _ => Err("not supported by Weir yet; ignored".to_string()),
            };
            if let Err(message) = result {
                problems.push(ConfigProblem {
                    key: key.clone(),
                    message,
                });
            }
        }
        cfg.server.hsts = hsts.then(|| hsts_value(max_age, subdomains, preload));
        cfg.server.compression = compression.finish();
        cfg.global_auth = global_auth.finish();
        cfg.policy.bandwidth = limit_keys.finish();
        let (log, log_problem) = access_log.finish();
        cfg.server.access_log = log;
        if let Some(message) = log_problem {
            problems.push(ConfigProblem {
                key: "log-format-upstream".into(),
                message,
            });
        }
        (cfg, problems)
    }
}

fn http_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn known_keys_set_route_defaults() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("proxy-connect-timeout", "2"),
            ("proxy-read-timeout", "120s"),
            ("proxy-send-timeout", "30"),
            ("proxy-next-upstream-tries", "5"),
        ])));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.policy.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.policy.upstream.read_timeout, Duration::from_secs(120));
        assert_eq!(c.policy.upstream.send_timeout, Duration::from_secs(30));
        assert_eq!(c.policy.upstream.next_upstream_tries, 5);
    }

    #[test]
    fn body_and_retry_keys() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("proxy-read-timeout", "86400"),
            ("proxy-body-size", "8m"),
            ("client-body-buffer-size", "16k"),
            ("proxy-request-buffering", "off"),
            ("proxy-next-upstream", "error http_503"),
            ("proxy-next-upstream-timeout", "10"),
            ("proxy-next-upstream-tries", "0"),
            ("retry-non-idempotent", "true"),
        ])));
        assert!(p.is_empty(), "{p:?}");
        let (u, b) = (&c.policy.upstream, &c.policy.body);
        assert_eq!(u.read_timeout, Duration::from_secs(86400));
        assert_eq!((b.max_size, b.buffer_size), (Some(8 << 20), 16384));
        assert!(!b.request_buffering);
        assert!(u.next_upstream.status(503) && !u.next_upstream.status(502));
        assert_eq!(u.next_upstream_timeout, Some(Duration::from_secs(10)));
        assert_eq!(u.next_upstream_tries, u8::MAX);
        assert!(u.retry_non_idempotent);
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("proxy-body-size", "0"),
            ("proxy-request-buffering", "yes"),
            ("proxy-next-upstream", "error sometimes"),
        ])));
        assert_eq!(c.policy.body.max_size, None);
        assert_eq!(
            c.policy,
            RoutePolicy {
                body: c.policy.body.clone(),
                ..RoutePolicy::default()
            }
        );
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["proxy-next-upstream", "proxy-request-buffering"]);
        assert!(p[0].message.contains("\"sometimes\""), "{}", p[0].message);
    }

    #[test]
    fn tls_and_client_address_keys() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("ssl-redirect", "false"),
            ("hsts-max-age", "600"),
            ("hsts-include-subdomains", "false"),
            ("hsts-preload", "true"),
            ("use-proxy-protocol", "true"),
            ("use-forwarded-headers", "true"),
            ("forwarded-for-header", "X-Real-Client"),
            ("compute-full-forwarded-for", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8, 192.168.1.1"),
            ("ssl-protocols", "TLSv1.3 TLSv1.2"),
            ("server-tokens", "false"),
        ])));
        assert!(p.is_empty(), "{p:?}");
        assert!(!c.ssl_redirect);
        assert_eq!(c.server.hsts.as_deref(), Some("max-age=600; preload"));
        assert!(c.server.proxy_protocol);
        let ip = &c.server.client_ip;
        assert!(ip.use_forwarded_headers && ip.compute_full_forwarded_for);
        assert_eq!(ip.forwarded_for_header, "x-real-client");
        assert_eq!(ip.trusted.len(), 2);
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("hsts", "false"),
            ("proxy-real-ip-cidr", "10.0.0.0/33"),
        ])));
        assert_eq!(c.server.hsts, None);
        assert!(
            c.server.client_ip.trusted.is_empty(),
            "a bad proxy-real-ip-cidr trusts nobody"
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("10.0.0.0/33"), "{}", p[0].message);
        let (_, p) = GlobalConfig::from_config_map(Some(&cm(&[("ssl-protocols", "TLSv1")])));
        assert_eq!(p.len(), 1);
        let (_, p) = GlobalConfig::from_config_map(Some(&cm(&[("server-tokens", "true")])));
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("never names"), "{}", p[0].message);
    }

    #[test]
    fn bad_and_unknown_keys_are_reported_and_keep_defaults() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("proxy-read-timeout", "soon"),
            ("proxy-next-upstream-tries", "two"),
            ("gzip-level", "0"),
        ])));
        assert_eq!(c, GlobalConfig::default());
        assert_eq!(
            c.server.hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gzip-level",
                "proxy-next-upstream-tries",
                "proxy-read-timeout"
            ]
        );
        assert!(p[2].message.contains("\"soon\""));
        assert_eq!(
            GlobalConfig::from_config_map(None).0,
            GlobalConfig::default()
        );
    }

    #[test]
    fn http_redirect_code() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[("http-redirect-code", "307")])));
        assert_eq!(c.server.http_redirect_code.map(|s| s.as_u16()), Some(307));
        assert!(p.is_empty());
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[("http-redirect-code", "303")])));
        assert_eq!(c.server.http_redirect_code, None, "308 is used");
        assert!(p[0].key == "http-redirect-code" && p[0].message.contains("\"303\""));
    }
}

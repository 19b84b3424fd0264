//! External authentication: `auth-url` and its companions, `enable-global-auth`. The same
//! settings, under `global-auth-*` keys, come from the ConfigMap (see [`AuthSettings`]).

use std::time::Duration;

use http::{HeaderName, Method};
use proxy_core::{AuthCache, AuthKeepalive, CacheRule, ExternalAuth, Signin, Template};

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-method",
    "auth-proxy-set-headers",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-url",
    "enable-global-auth",
];

/// ingress-nginx's `auth-cache-duration` when none is given.
pub const DEFAULT_CACHE_DURATION: &str = "200 202 401 5m";

/// Settings shared by `auth-*` annotations and `global-auth-*` ConfigMap keys, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `auth-url`, checked.
    pub url: Option<ExternalAuth>,
    /// `auth-method`.
    pub method: Option<Method>,
    /// `auth-signin`, as written (checked).
    pub signin: Option<String>,
    /// `auth-signin-redirect-param` (default `rd`).
    pub signin_redirect_param: Option<String>,
    /// `auth-response-headers`.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`.
    pub request_redirect: Option<Template>,
    /// `auth-cache-key`.
    pub cache_key: Option<Template>,
    /// `auth-cache-duration`.
    pub cache_duration: Option<Vec<CacheRule>>,
    /// `auth-always-set-cookie`.
    pub always_set_cookie: bool,
    /// `auth-keepalive`.
    pub keepalive: Option<i64>,
    /// `auth-keepalive-requests`.
    pub keepalive_requests: Option<i64>,
    /// `auth-keepalive-timeout`, seconds.
    pub keepalive_timeout: Option<i64>,
}

impl AuthSettings {
    /// Take one setting by its name without the `auth-` / `global-auth-` prefix (`url`,
    /// `method`, ...). `Err`: why the value is bad.
    pub(crate) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        match name {
            "url" => self.url = Some(ExternalAuth::new(v).map_err(|e| e.to_string())?),
            "method" => self.method = Some(method(v)?),
            "signin" => {
                Signin::new(v, "rd").map_err(|e| e.to_string())?;
                if !(v.starts_with("http://") || v.starts_with("https://") || v.starts_with('$')) {
                    return Err(format!(
                        "expected an http:// or https:// URL, got {value:?}"
                    ));
                }
                self.signin = Some(v.to_string());
            }
            "signin-redirect-param" => {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(format!("expected a query parameter name, got {value:?}"));
                }
                self.signin_redirect_param = Some(v.to_string());
            }
            "response-headers" => self.response_headers = header_list(v)?,
            "request-redirect" => {
                self.request_redirect = Some(Template::parse(v).map_err(|e| e.to_string())?)
            }
            "cache-key" => {
                self.cache_key = (!v.is_empty())
                    .then(|| Template::parse(v).map_err(|e| e.to_string()))
                    .transpose()?
            }
            "cache-duration" => self.cache_duration = Some(cache_durations(v)?),
            "always-set-cookie" => self.always_set_cookie = super::boolean(v)?,
            "keepalive" => self.keepalive = Some(integer(v)?),
            "keepalive-requests" => self.keepalive_requests = Some(integer(v)?),
            "keepalive-timeout" => self.keepalive_timeout = Some(integer(v)?),
            _ => return Err("not an external authentication setting".into()),
        }
        Ok(())
    }

    /// The route piece: `None` without a URL. `scope`: which routes share cached answers;
    /// `proxy_set_headers`: headers sent to the auth service.
    pub fn piece(
        &self,
        scope: &str,
        proxy_set_headers: Vec<(HeaderName, Template)>,
    ) -> Option<ExternalAuth> {
        let mut auth = self.url.clone()?;
        auth.method = self.method.clone();
        let param = self.signin_redirect_param.as_deref().unwrap_or("rd");
        auth.signin = self
            .signin
            .as_deref()
            .and_then(|s| Signin::new(s, param).ok());
        auth.response_headers = self.response_headers.clone();
        auth.request_redirect = self.request_redirect.clone();
        auth.proxy_set_headers = proxy_set_headers;
        auth.cache = self.cache_key.clone().map(|key| AuthCache {
            key,
            rules: self
                .cache_duration
                .clone()
                .unwrap_or_else(|| cache_durations(DEFAULT_CACHE_DURATION).unwrap_or_default()),
        });
        auth.always_set_cookie = self.always_set_cookie;
        // As ingress-nginx: keepalive is off for a bad companion value or a host with variables.
        let mut connections = self.keepalive.unwrap_or(0).max(0);
        let timeout = self.keepalive_timeout.unwrap_or(60);
        if self.keepalive_requests.unwrap_or(1000) <= 0
            || timeout <= 0
            || auth.url().split("://").nth(1).is_some_and(|rest| {
                rest.split('/')
                    .next()
                    .is_some_and(|host| host.contains('$'))
            })
        {
            connections = 0;
        }
        auth.keepalive = AuthKeepalive {
            connections: u32::try_from(connections).unwrap_or(u32::MAX),
            timeout: Duration::from_secs(timeout.max(1) as u64),
        };
        auth.cache_scope = scope.into();
        Some(auth)
    }
}

/// The external authentication annotations of one Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalAuthAnnotations {
    /// The `auth-*` settings.
    pub settings: AuthSettings,
    /// `auth-proxy-set-headers`: a ConfigMap `namespace/name` (or `name`).
    pub proxy_set_headers: Option<String>,
    /// `enable-global-auth` (default true).
    pub enable_global_auth: Option<bool>,
}

impl ExternalAuthAnnotations {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "enable-global-auth" => self.enable_global_auth = Some(super::boolean(value)?),
            "auth-proxy-set-headers" => {
                let v = value.trim();
                let ok = !v.is_empty()
                    && v.split('/').count() <= 2
                    && v.split('/').all(|p| {
                        !p.is_empty()
                            && p.bytes().all(|b| {
                                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)
                            })
                    });
                if !ok {
                    return Err(format!(
                        "expected a ConfigMap as namespace/name or name, got {value:?}"
                    ));
                }
                self.proxy_set_headers = Some(v.to_string());
            }
            _ => {
                let setting = name.strip_prefix("auth-").unwrap_or(name);
                self.settings.parse(setting, value)?;
            }
        }
        Ok(())
    }

    /// Whether the ConfigMap's `global-auth-url` applies (no `auth-url`, `enable-global-auth`
    /// not false).
    pub fn wants_global_auth(&self) -> bool {
        self.settings.url.is_none() && self.enable_global_auth != Some(false)
    }
}

/// The external authentication of an Ingress's routes: its own `auth-url` (with the headers
/// of its `auth-proxy-set-headers` ConfigMap), else the global one unless
/// `enable-global-auth: "false"`. `Err`: why the Ingress must not be served.
pub(crate) fn resolve(
    ing: &crate::admission::ValidIngress,
    objects: &crate::objects::ObjectSet,
    global: &crate::config::GlobalAuth,
) -> Result<Option<std::sync::Arc<ExternalAuth>>, String> {
    let a = &ing.annotations.external_auth;
    if a.settings.url.is_none() {
        if !a.wants_global_auth() {
            return Ok(None);
        }
        if let Some(reason) = &global.refusal {
            return Err(reason.clone());
        }
        return Ok(global.auth.clone());
    }
    let mut headers = Vec::new();
    if let Some(reference) = &a.proxy_set_headers {
        let (ns, name) = reference
            .split_once('/')
            .unwrap_or((ing.namespace.as_str(), reference.as_str()));
        if ns != ing.namespace {
            return Err(format!(
                "auth-proxy-set-headers: ConfigMap {reference} is not in the Ingress's namespace"
            ));
        }
        let key = format!("{ns}/{name}");
        let cm = objects
            .config_maps
            .get(&key)
            .ok_or_else(|| format!("auth-proxy-set-headers: ConfigMap {key} not found"))?;
        for (k, v) in cm.data.iter().flatten() {
            let name = header_name(k)
                .map_err(|e| format!("auth-proxy-set-headers: ConfigMap {key}: {e}"))?;
            let value = Template::parse(v)
                .map_err(|e| format!("auth-proxy-set-headers: ConfigMap {key}: header {k}: {e}"))?;
            headers.push((name, value));
        }
    }
    Ok(a.settings
        .piece(&ing.order.name, headers)
        .map(std::sync::Arc::new))
}

/// An HTTP method ingress-nginx accepts for `auth-method`.
fn method(v: &str) -> Result<Method, String> {
    match v {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" => {
            Method::from_bytes(v.as_bytes()).map_err(|e| e.to_string())
        }
        _ => Err(format!("expected an HTTP method such as GET, got {v:?}")),
    }
}

fn integer(v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|_| format!("expected an integer, got {v:?}"))
}

/// A header name as ingress-nginx accepts one (letters, digits, `-`, `_`).
pub(crate) fn header_name(h: &str) -> Result<HeaderName, String> {
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("invalid header name {h:?}"));
    }
    HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("invalid header name {h:?}"))
}

/// A comma-separated list of header names (`auth-response-headers`).
pub(crate) fn header_list(v: &str) -> Result<Vec<HeaderName>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(header_name)
        .collect()
}

/// `auth-cache-duration`: comma-separated `[code ...] time ...` entries (`200 202 10m`,
/// `any 1m`; a time alone covers 200, 301 and 302, as nginx's `proxy_cache_valid`).
pub(crate) fn cache_durations(v: &str) -> Result<Vec<CacheRule>, String> {
    let mut rules = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut rule = CacheRule {
            statuses: Vec::new(),
            any: false,
            ttl: Duration::ZERO,
        };
        let mut seen_time = false;
        for word in entry.split_whitespace() {
            if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) && !seen_time {
                let code: u16 = word
                    .parse()
                    .map_err(|_| format!("invalid status {word:?}"))?;
                if !(100..=599).contains(&code) {
                    return Err(format!("invalid status {word:?} in {entry:?}"));
                }
                rule.statuses.push(code);
            } else if word == "any" && !seen_time {
                rule.any = true;
            } else {
                rule.ttl +=
                    nginx_time(word).ok_or_else(|| format!("invalid cache duration {entry:?}"))?;
                seen_time = true;
            }
        }
        if !seen_time {
            return Err(format!("invalid cache duration {entry:?}: no time"));
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return cache_durations(DEFAULT_CACHE_DURATION);
    }
    Ok(rules)
}

/// An nginx time such as `10m`, `30s`, `500ms`, `1h`, `2d`, `1w`, `1M`, `1y`.
fn nginx_time(w: &str) -> Option<Duration> {
    let split = w.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = w.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = |s: u64| Some(Duration::from_secs(n.checked_mul(s)?));
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "w" => secs(7 * 86_400),
        "M" => secs(30 * 86_400),
        "y" => secs(365 * 86_400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ExternalAuthAnnotations, String> {
        let mut a = ExternalAuthAnnotations::default();
        for (k, v) in pairs {
            a.parse(k, v)?;
        }
        Ok(a)
    }

    #[test]
    fn full_set_builds_the_piece() {
        let a = parse(&[
            (
                "auth-url",
                "https://auth.example/check?u=$escaped_request_uri",
            ),
            ("auth-method", "POST"),
            ("auth-signin", "https://login.example/start"),
            ("auth-signin-redirect-param", "orig"),
            ("auth-response-headers", "X-User, X-Groups,"),
            ("auth-request-redirect", "https://$host/back"),
            ("auth-cache-key", "$http_authorization"),
            ("auth-cache-duration", "200 202 10m, 401 30s"),
            ("auth-always-set-cookie", "true"),
            ("auth-keepalive", "10"),
            ("auth-keepalive-timeout", "5"),
            ("auth-proxy-set-headers", "team/auth-headers"),
            ("enable-global-auth", "false"),
        ])
        .unwrap();
        assert!(!a.wants_global_auth());
        assert_eq!(a.proxy_set_headers.as_deref(), Some("team/auth-headers"));
        let p = a.settings.piece("ns/ing", Vec::new()).unwrap();
        assert_eq!(p.method, Some(Method::POST));
        assert_eq!(p.response_headers.len(), 2);
        assert!(p.signin.is_some() && p.always_set_cookie);
        let cache = p.cache.unwrap();
        assert_eq!(cache.rules[0].statuses, [200, 202]);
        assert_eq!(cache.rules[1].ttl, Duration::from_secs(30));
        assert_eq!(p.keepalive.connections, 10);
        assert_eq!(p.keepalive.timeout, Duration::from_secs(5));
    }

    #[test]
    fn keepalive_off_for_bad_companions_and_variable_hosts() {
        let p = |pairs: &[(&str, &str)]| {
            parse(pairs)
                .unwrap()
                .settings
                .piece("s", Vec::new())
                .unwrap()
                .keepalive
                .connections
        };
        assert_eq!(p(&[("auth-url", "http://a/"), ("auth-keepalive", "-3")]), 0);
        assert_eq!(
            p(&[
                ("auth-url", "http://a/"),
                ("auth-keepalive", "4"),
                ("auth-keepalive-requests", "0")
            ]),
            0
        );
        assert_eq!(
            p(&[("auth-url", "http://$host/"), ("auth-keepalive", "4")]),
            0
        );
        assert_eq!(
            p(&[("auth-url", "http://a/$host"), ("auth-keepalive", "4")]),
            4
        );
    }

    #[test]
    fn malformed_values_are_rejected_with_the_value() {
        for (k, v) in [
            ("auth-url", "not a url"),
            ("auth-url", "ftp://a/"),
            ("auth-url", "http://a/$nosuchvar"),
            ("auth-method", "get"),
            ("auth-method", "FETCH"),
            ("auth-signin", "/relative"),
            ("auth-signin-redirect-param", "a b"),
            ("auth-response-headers", "X-User, X User"),
            ("auth-cache-duration", "200 202"),
            ("auth-cache-duration", "10m 200"),
            ("auth-cache-duration", "200 10x"),
            ("auth-always-set-cookie", "yes"),
            ("auth-keepalive", "many"),
            ("auth-keepalive-timeout", "1.5"),
            ("auth-proxy-set-headers", "a/b/c"),
            ("auth-proxy-set-headers", "Bad_Name"),
            ("enable-global-auth", "no"),
        ] {
            assert!(parse(&[(k, v)]).is_err(), "{k}: {v}");
        }
        let err = parse(&[("auth-method", "FETCH")]).unwrap_err();
        assert!(err.contains("FETCH"), "{err}");
    }

    #[test]
    fn cache_durations_as_nginx() {
        let d = cache_durations("").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].statuses, [200, 202, 401]);
        assert_eq!(d[0].ttl, Duration::from_secs(300));
        let d = cache_durations("any 1h 30m").unwrap();
        assert!(d[0].any);
        assert_eq!(d[0].ttl, Duration::from_secs(5400));
        assert!(cache_durations("10m").unwrap()[0].statuses.is_empty());
        assert!(cache_durations("999 1m").is_err());
    }

    #[test]
    fn without_url_there_is_no_piece_and_global_auth_applies() {
        let a = parse(&[("auth-method", "GET")]).unwrap();
        assert!(a.settings.piece("s", Vec::new()).is_none());
        assert!(a.wants_global_auth());
    }
}

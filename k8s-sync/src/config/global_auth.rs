//! Global external authentication: `global-auth-url` and its companions, `no-auth-locations`.
//!
//! Every Ingress path without its own `auth-url` and without `enable-global-auth: "false"` is
//! authenticated against `global-auth-url`, except the paths starting with a
//! `no-auth-locations` entry. A malformed `global-auth-url` fails closed: those Ingresses answer
//! 503 until it is fixed.

use std::sync::Arc;

use proxy_core::ExternalAuth;

use crate::annotations::AuthSettings;

/// The keys of this module.
pub(super) const KEYS: &[&str] = &[
    "global-auth-always-set-cookie",
    "global-auth-cache-duration",
    "global-auth-cache-key",
    "global-auth-method",
    "global-auth-request-redirect",
    "global-auth-response-headers",
    "global-auth-signin",
    "global-auth-signin-redirect-param",
    "global-auth-snippet",
    "global-auth-url",
    "no-auth-locations",
];

/// ingress-nginx's default `no-auth-locations`.
pub const DEFAULT_NO_AUTH_LOCATIONS: &str = "/.well-known/acme-challenge";

/// The global external authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalAuth {
    /// The piece for Ingresses without `auth-url` (`None`: no `global-auth-url`).
    pub auth: Option<Arc<ExternalAuth>>,
    /// Why `global-auth-url` cannot be honoured: the Ingresses it covers answer 503.
    pub refusal: Option<String>,
    /// Ingress paths starting with one of these are never authenticated (`no-auth-locations`).
    pub no_auth_locations: Vec<String>,
}

impl Default for GlobalAuth {
    fn default() -> Self {
        GlobalAuth {
            auth: None,
            refusal: None,
            no_auth_locations: locations(DEFAULT_NO_AUTH_LOCATIONS),
        }
    }
}

impl GlobalAuth {
    /// Whether an Ingress path is exempt from authentication.
    pub fn exempts(&self, path: &str) -> bool {
        self.no_auth_locations
            .iter()
            .any(|l| path.starts_with(l.as_str()))
    }
}

fn locations(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the keys say, before [`finish`](Self::finish).
#[derive(Debug, Default)]
pub(super) struct GlobalAuthKeys {
    settings: AuthSettings,
    refusal: Option<String>,
    no_auth_locations: Option<Vec<String>>,
}

impl GlobalAuthKeys {
    /// Take one key of [`KEYS`].
    pub(super) fn parse(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "no-auth-locations" => {
                self.no_auth_locations = Some(locations(value));
                Ok(())
            }
            "global-auth-snippet" => Err(
                "refused: nginx snippets do not exist in Weir; the auth request is made without it"
                    .into(),
            ),
            "global-auth-url" if value.trim().is_empty() => Ok(()),
            _ => {
                let name = key.strip_prefix("global-auth-").unwrap_or(key);
                self.settings.parse(name, value).map_err(|e| {
                    if name == "url" {
                        self.refusal = Some(format!("global-auth-url is invalid: {e}"));
                        format!("{e}; Ingresses it covers answer 503 until it is fixed")
                    } else {
                        format!("{e}; the default is used")
                    }
                })
            }
        }
    }

    pub(super) fn finish(self) -> GlobalAuth {
        GlobalAuth {
            auth: self.settings.piece("global", Vec::new()).map(Arc::new),
            refusal: self.refusal,
            no_auth_locations: self
                .no_auth_locations
                .unwrap_or_else(|| locations(DEFAULT_NO_AUTH_LOCATIONS)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> (GlobalAuth, Vec<String>) {
        let mut k = GlobalAuthKeys::default();
        let errors = pairs
            .iter()
            .filter_map(|(key, v)| k.parse(key, v).err())
            .collect();
        (k.finish(), errors)
    }

    #[test]
    fn defaults_and_a_full_set() {
        let (g, e) = keys(&[]);
        assert!(e.is_empty() && g.auth.is_none() && g.refusal.is_none());
        assert!(g.exempts("/.well-known/acme-challenge/token"));
        assert!(!g.exempts("/"));
        let (g, e) = keys(&[
            ("global-auth-url", "http://auth.sso.svc/check"),
            ("global-auth-method", "POST"),
            ("global-auth-signin", "https://login/start"),
            ("global-auth-response-headers", "X-User"),
            ("global-auth-cache-key", "$remote_addr"),
            ("global-auth-cache-duration", "200 1m"),
            ("global-auth-always-set-cookie", "true"),
            ("no-auth-locations", "/public, /health"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        let a = g.auth.clone().unwrap();
        assert_eq!(a.url(), "http://auth.sso.svc/check");
        assert!(a.signin.is_some() && a.cache.is_some() && a.always_set_cookie);
        assert!(
            g.exempts("/public/x")
                && g.exempts("/health")
                && !g.exempts("/.well-known/acme-challenge")
        );
    }

    #[test]
    fn a_bad_url_fails_closed_other_bad_values_keep_the_default() {
        let (g, e) = keys(&[("global-auth-url", "auth.svc/check")]);
        assert!(g.auth.is_none());
        assert!(g.refusal.unwrap().contains("global-auth-url"));
        assert!(e[0].contains("503"), "{e:?}");
        let (g, e) = keys(&[
            ("global-auth-url", "http://a/"),
            ("global-auth-method", "fetch"),
            ("global-auth-snippet", "x"),
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
        let a = g.auth.unwrap();
        assert_eq!((a.method.clone(), g.refusal), (None, None));
        let (g, _) = keys(&[("global-auth-url", " ")]);
        assert!(g.auth.is_none() && g.refusal.is_none());
    }
}

//! Global options from the ConfigMap named by `--configmap` (ingress-nginx's keys and defaults).
//!
//! Supported keys: `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout` (seconds,
//! optionally with an `s` suffix) and `proxy-next-upstream-tries`. A bad value keeps the default
//! for that key and is reported; a key Weir does not implement yet is reported once.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use proxy_core::RoutePolicy;

/// The global options Weir applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// Defaults for every route.
    pub policy: RoutePolicy,
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
    let n = v.trim().strip_suffix('s').unwrap_or(v.trim());
    match n.parse::<u64>() {
        Ok(s) if s > 0 && s <= 3600 => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "expected a number of seconds between 1 and 3600, got {v:?}"
        )),
    }
}

impl GlobalConfig {
    /// Read the options; problems are returned next to a config that uses the defaults for them.
    pub fn from_config_map(cm: Option<&ConfigMap>) -> (GlobalConfig, Vec<ConfigProblem>) {
        let mut cfg = GlobalConfig::default();
        let mut problems = Vec::new();
        let Some(data) = cm.and_then(|c| c.data.as_ref()) else {
            return (cfg, problems);
        };
        for (key, value) in data {
            let result = match key.as_str() {
                "proxy-connect-timeout" => seconds(value).map(|d| cfg.policy.connect_timeout = d),
                "proxy-read-timeout" => seconds(value).map(|d| cfg.policy.read_timeout = d),
                "proxy-send-timeout" => seconds(value).map(|d| cfg.policy.send_timeout = d),
                "proxy-next-upstream-tries" => match value.trim().parse::<u8>() {
                    Ok(n) if n >= 1 => {
                        cfg.policy.next_upstream_tries = n;
                        Ok(())
                    }
                    _ => Err(format!(
                        "expected a whole number from 1 to 255, got {value:?}"
                    )),
                },
                _ => Err("not supported by Weir yet; ignored".to_string()),
            };
            if let Err(message) = result {
                problems.push(ConfigProblem {
                    key: key.clone(),
                    message,
                });
            }
        }
        (cfg, problems)
    }
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
        assert_eq!(c.policy.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.policy.read_timeout, Duration::from_secs(120));
        assert_eq!(c.policy.send_timeout, Duration::from_secs(30));
        assert_eq!(c.policy.next_upstream_tries, 5);
    }

    #[test]
    fn bad_and_unknown_keys_are_reported_and_keep_defaults() {
        let (c, p) = GlobalConfig::from_config_map(Some(&cm(&[
            ("proxy-read-timeout", "soon"),
            ("proxy-next-upstream-tries", "0"),
            ("enable-brotli", "true"),
        ])));
        assert_eq!(c, GlobalConfig::default());
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "enable-brotli",
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
}

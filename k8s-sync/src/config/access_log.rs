//! ConfigMap keys of the access log: `log-format-upstream`, `log-format-escape-json`,
//! `log-format-escape-none`, `disable-access-log`, `disable-http-access-log`,
//! `skip-access-log-urls`, `enable-access-log-for-default-backend`, with ingress-nginx's
//! defaults. A format that does not compile keeps the default format.

use std::sync::Arc;

use proxy_core::{AccessLogConfig, Escape, LogFormat};

use super::boolean;

/// The keys read here.
pub(super) const KEYS: &[&str] = &[
    "disable-access-log",
    "disable-http-access-log",
    "enable-access-log-for-default-backend",
    "log-format-escape-json",
    "log-format-escape-none",
    "log-format-upstream",
    "skip-access-log-urls",
];

/// The access log keys of one ConfigMap, before they are combined.
#[derive(Default)]
pub(super) struct AccessLogKeys {
    disabled: bool,
    escape_json: bool,
    escape_none: bool,
    format: Option<String>,
    skip_urls: Vec<String>,
    default_backend: bool,
}

impl AccessLogKeys {
    /// Take one key of [`KEYS`].
    pub(super) fn parse(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "disable-access-log" | "disable-http-access-log" => {
                boolean(value).map(|b| self.disabled |= b)
            }
            "enable-access-log-for-default-backend" => {
                boolean(value).map(|b| self.default_backend = b)
            }
            "log-format-escape-json" => boolean(value).map(|b| self.escape_json = b),
            "log-format-escape-none" => boolean(value).map(|b| self.escape_none = b),
            "log-format-upstream" => {
                if value.trim().is_empty() {
                    Ok(())
                } else {
                    self.format = Some(value.to_string());
                    Ok(())
                }
            }
            "skip-access-log-urls" => {
                self.skip_urls = value
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect();
                Ok(())
            }
            _ => Err("not an access log key".into()),
        }
    }

    /// The access log (`None`: disabled), and why `log-format-upstream` was not used.
    pub(super) fn finish(self) -> (Option<AccessLogConfig>, Option<String>) {
        if self.disabled {
            return (None, None);
        }
        // As ingress-nginx's template: `escape=none` wins over `escape=json`.
        let escape = if self.escape_none {
            Escape::None
        } else if self.escape_json {
            Escape::Json
        } else {
            Escape::Default
        };
        let source = self.format.as_deref().unwrap_or(LogFormat::UPSTREAMINFO);
        let (format, problem) = match LogFormat::compile(source, escape) {
            Ok(f) => (f, None),
            Err(e) => (
                LogFormat::compile(LogFormat::UPSTREAMINFO, escape)
                    .expect("the default format compiles"),
                Some(format!(
                    "{e} in {source:?}; the default format is used until it is fixed"
                )),
            ),
        };
        (
            Some(AccessLogConfig {
                format: Arc::new(format),
                skip_urls: self.skip_urls,
                default_backend: self.default_backend,
            }),
            problem,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> (Option<AccessLogConfig>, Option<String>, Vec<String>) {
        let mut k = AccessLogKeys::default();
        let mut errors = Vec::new();
        for (key, value) in pairs {
            if let Err(e) = k.parse(key, value) {
                errors.push(e);
            }
        }
        let (c, p) = k.finish();
        (c, p, errors)
    }

    #[test]
    fn defaults_and_custom_formats() {
        let (c, p, e) = keys(&[]);
        let c = c.unwrap();
        assert_eq!((p, e.len()), (None, 0));
        assert_eq!(c.format.source(), LogFormat::UPSTREAMINFO);
        assert_eq!(c.format.escape(), Escape::Default);
        assert!(c.skip_urls.is_empty() && !c.default_backend);

        let (c, p, _) = keys(&[
            ("log-format-upstream", "$host $http_x_foo"),
            ("log-format-escape-json", "true"),
            ("skip-access-log-urls", "/healthz, /ready,"),
            ("enable-access-log-for-default-backend", "true"),
        ]);
        let c = c.unwrap();
        assert_eq!(p, None);
        assert_eq!(c.format.source(), "$host $http_x_foo");
        assert_eq!(c.format.escape(), Escape::Json);
        assert_eq!(c.skip_urls, ["/healthz", "/ready"]);
        assert!(c.default_backend);

        let (c, _, _) = keys(&[
            ("log-format-escape-json", "true"),
            ("log-format-escape-none", "true"),
        ]);
        assert_eq!(c.unwrap().format.escape(), Escape::None);
    }

    #[test]
    fn disabled_and_bad_values() {
        assert_eq!(keys(&[("disable-access-log", "true")]).0, None);
        assert_eq!(keys(&[("disable-http-access-log", "true")]).0, None);
        assert!(keys(&[("disable-access-log", "false")]).0.is_some());
        let (c, p, e) = keys(&[
            ("log-format-upstream", "$remote_addr $bogus"),
            ("disable-access-log", "yes"),
        ]);
        assert_eq!(c.unwrap().format.source(), LogFormat::UPSTREAMINFO);
        let p = p.unwrap();
        assert!(p.contains("unknown variable \"$bogus\""), "{p}");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("\"yes\""), "{}", e[0]);
    }
}

//! `rewrite-target`, `use-regex`, `app-root`, `x-forwarded-prefix`, `upstream-vhost`,
//! `permanent-redirect(-code)`, `temporal-redirect(-code)`: regex paths, the URI and `Host` sent
//! upstream, and fixed redirects.

use http::{HeaderValue, StatusCode};
use proxy_core::{Rewrite, UrlRedirect};

use super::boolean;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "app-root",
    "from-to-www-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "rewrite-target",
    "server-alias",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-vhost",
    "use-regex",
    "x-forwarded-prefix",
];

/// An Ingress's rewrite and redirect settings, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// `rewrite-target`.
    pub target: Option<String>,
    /// `use-regex`.
    pub use_regex: bool,
    /// `app-root`.
    pub app_root: Option<String>,
    /// `x-forwarded-prefix`.
    pub forwarded_prefix: Option<String>,
    /// `upstream-vhost`.
    pub upstream_vhost: Option<HeaderValue>,
    /// `permanent-redirect`.
    pub permanent: Option<HeaderValue>,
    /// `permanent-redirect-code` (default 301; outside 300–308 means 301, as ingress-nginx).
    pub permanent_code: Option<u16>,
    /// `temporal-redirect` (wins over `permanent-redirect`).
    pub temporal: Option<HeaderValue>,
    /// `temporal-redirect-code` (default 302; outside 300–307 means 302, as ingress-nginx).
    pub temporal_code: Option<u16>,
    /// `from-to-www-redirect`: the other name of each host (`www.` added or removed) redirects
    /// to it.
    pub from_to_www: bool,
    /// `server-alias`: extra host names served by the rules of the Ingress's hosts.
    pub aliases: Vec<String>,
}

/// ingress-nginx's `RegexPathWithCapture`: an optional leading `/`, then `-._~`, letters,
/// digits, `/`, `:` and `$`.
fn path_with_captures(v: &str) -> Result<String, String> {
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/:$".contains(&b));
    if v.is_empty() || !ok {
        return Err(format!(
            "expected a path of letters, digits, \"-._~/:\" and $1-$9 captures, got {v:?}"
        ));
    }
    Ok(v.to_string())
}

/// A redirect URL: `http://` or `https://` and the characters ingress-nginx allows in one.
fn redirect_url(v: &str) -> Result<HeaderValue, String> {
    let v = v.trim();
    let scheme = v.starts_with("http://") || v.starts_with("https://");
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"'<>\\^`{|}".contains(&b));
    match HeaderValue::try_from(v) {
        Ok(h) if scheme && ok => Ok(h),
        _ => Err(format!("expected an http:// or https:// URL, got {v:?}")),
    }
}

fn code(v: &str) -> Result<u16, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a status code, got {v:?}"))
}

impl Rewrites {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "rewrite-target" => self.target = Some(path_with_captures(value)?),
            "use-regex" => self.use_regex = boolean(value)?,
            "from-to-www-redirect" => self.from_to_www = boolean(value)?,
            "server-alias" => {
                let mut aliases = Vec::new();
                for a in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    let a = a.to_ascii_lowercase();
                    if proxy_core::validate_rule(Some(&a), proxy_core::PathKind::Prefix, "/")
                        .is_err()
                    {
                        return Err(format!("{a:?} is not a host name, in {value:?}"));
                    }
                    aliases.push(a);
                }
                self.aliases = aliases;
            }
            "app-root" => {
                let root = path_with_captures(value)?;
                if !root.starts_with('/') || root.contains('$') {
                    return Err(format!(
                        "expected a path starting with \"/\", got {value:?}"
                    ));
                }
                self.app_root = Some(root);
            }
            "x-forwarded-prefix" => self.forwarded_prefix = Some(path_with_captures(value)?),
            "upstream-vhost" => {
                let v = value.trim();
                let ok = !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
                match HeaderValue::try_from(v) {
                    Ok(h) if ok => self.upstream_vhost = Some(h),
                    _ => return Err(format!("expected a host name, got {value:?}")),
                }
            }
            "permanent-redirect" => self.permanent = Some(redirect_url(value)?),
            "temporal-redirect" => self.temporal = Some(redirect_url(value)?),
            "permanent-redirect-code" => self.permanent_code = Some(code(value)?),
            _ => self.temporal_code = Some(code(value)?),
        }
        Ok(())
    }

    /// Whether this Ingress puts its hosts in regex mode, for a rule with `path`: `use-regex`,
    /// or a `rewrite-target` other than the path (ingress-nginx's `enforceRegexModifier`).
    pub fn wants_regex(&self, path: &str) -> bool {
        self.use_regex || self.target.as_deref().is_some_and(|t| t != path)
    }

    /// The policy piece, when any setting is there.
    pub fn policy(&self) -> Option<Box<Rewrite>> {
        let redirect = if let Some(location) = &self.temporal {
            let c = self.temporal_code.filter(|c| (300..=307).contains(c));
            Some(UrlRedirect {
                location: location.clone(),
                status: StatusCode::from_u16(c.unwrap_or(302)).unwrap_or(StatusCode::FOUND),
            })
        } else {
            self.permanent.as_ref().map(|location| {
                let c = self.permanent_code.filter(|c| (300..=308).contains(c));
                UrlRedirect {
                    location: location.clone(),
                    status: StatusCode::from_u16(c.unwrap_or(301))
                        .unwrap_or(StatusCode::MOVED_PERMANENTLY),
                }
            })
        };
        let r = Rewrite {
            app_root: self.app_root.as_deref().map(Into::into),
            redirect,
            target: self.target.as_deref().map(Into::into),
            forwarded_prefix: self.forwarded_prefix.as_deref().map(Into::into),
            upstream_vhost: self.upstream_vhost.clone(),
            www_redirect: None,
        };
        (r != Rewrite::default()).then(|| Box::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_malformed_values() {
        let mut r = Rewrites::default();
        assert!(r.parse("rewrite-target", "/$2").is_ok());
        assert!(r.parse("rewrite-target", "/a b").is_err());
        assert!(r.parse("rewrite-target", "/x;return 200").is_err());
        assert!(r.parse("rewrite-target", "").is_err());
        assert_eq!(r.target.as_deref(), Some("/$2"));
        assert!(r.parse("use-regex", "maybe").is_err());
        assert!(r.parse("from-to-www-redirect", "yes").is_err());
        assert!(!r.from_to_www);
        assert!(r.parse("from-to-www-redirect", "true").is_ok());
        assert!(r.parse("server-alias", "a.test, b b").is_err());
        assert!(r.aliases.is_empty());
        assert!(r.parse("server-alias", "A.test, *.b.test").is_ok());
        assert_eq!(r.aliases, ["a.test", "*.b.test"]);
        assert!(r.from_to_www);
        assert!(r.parse("use-regex", "true").is_ok());
        assert!(r.use_regex);
        assert!(r.parse("app-root", "http://x/app").is_err());
        assert!(r.parse("app-root", "app").is_err());
        assert!(r.parse("app-root", "/app1").is_ok());
        assert!(r.parse("upstream-vhost", "a b").is_err());
        assert!(r.parse("upstream-vhost", "svc.ns.svc:8080").is_ok());
        assert!(r.parse("permanent-redirect", "/local").is_err());
        assert!(r
            .parse("permanent-redirect", "https://a.test/x\"y")
            .is_err());
        assert!(r
            .parse("permanent-redirect", "https://a.test/?q=1&b")
            .is_ok());
        assert!(r.parse("permanent-redirect-code", "abc").is_err());
        assert!(r.parse("x-forwarded-prefix", "/$1").is_ok());
    }

    #[test]
    fn codes_default_and_temporal_wins() {
        let mut r = Rewrites::default();
        r.parse("permanent-redirect", "https://p.test").unwrap();
        let status = |r: &Rewrites| r.policy().unwrap().redirect.unwrap().status.as_u16();
        assert_eq!(status(&r), 301);
        r.parse("permanent-redirect-code", "308").unwrap();
        assert_eq!(status(&r), 308);
        r.parse("permanent-redirect-code", "200").unwrap();
        assert_eq!(status(&r), 301, "outside 300-308 means the default");
        r.parse("temporal-redirect", "https://t.test").unwrap();
        assert_eq!(status(&r), 302);
        r.parse("temporal-redirect-code", "308").unwrap();
        assert_eq!(status(&r), 302, "outside 300-307 means the default");
        r.parse("temporal-redirect-code", "307").unwrap();
        assert_eq!(status(&r), 307);
        assert_eq!(Rewrites::default().policy(), None);
    }

    #[test]
    fn regex_mode() {
        let mut r = Rewrites::default();
        assert!(!r.wants_regex("/a"));
        r.target = Some("/a".into());
        assert!(
            !r.wants_regex("/a"),
            "a target equal to the path is no rewrite"
        );
        assert!(r.wants_regex("/b"));
        r.target = None;
        r.use_regex = true;
        assert!(r.wants_regex("/a"));
    }
}

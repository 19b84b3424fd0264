//! Canary (`canary-by-header`, `canary-by-cookie`, `canary-weight`): a route's second backend,
//! chosen per request in the proxy phase as ingress-nginx's balancer does: the header first,
//! then the cookie, then the weight.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::HeaderName;
use pingora::http::RequestHeader;

use crate::model::Target;

/// How the value of the `canary-by-header` header is compared.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    /// `always` sends the request to the canary, `never` to the main backend; any other value
    /// falls through to the cookie and the weight.
    AlwaysNever,
    /// `canary-by-header-value`: this exact value sends the request to the canary; any other
    /// falls through.
    Value(Box<str>),
    /// `canary-by-header-pattern`: a matching value sends the request to the canary; any other
    /// falls through.
    Pattern(regex::bytes::Regex),
    /// A pattern Weir cannot compile: a request carrying the header goes to the main backend
    /// (ingress-nginx's answer when the pattern fails at request time).
    Unusable,
}

impl HeaderMatch {
    /// `canary-by-header-pattern`: the pattern compiled (unanchored, case-sensitive, as
    /// ingress-nginx's `ngx.re.match`), or why Weir cannot use it (the `regex` crate has no
    /// lookaround nor backreferences).
    pub fn pattern(pattern: &str) -> Result<HeaderMatch, String> {
        regex::bytes::Regex::new(pattern)
            .map(HeaderMatch::Pattern)
            .map_err(|e| e.to_string())
    }

    fn key(&self) -> (u8, &str) {
        match self {
            HeaderMatch::AlwaysNever => (0, ""),
            HeaderMatch::Value(v) => (1, &**v),
            HeaderMatch::Pattern(p) => (2, p.as_str()),
            HeaderMatch::Unusable => (3, ""),
        }
    }
}

/// `canary-by-header` and how its value is compared.
#[derive(Debug, Clone)]
pub struct CanaryHeader {
    /// The request header consulted.
    pub name: HeaderName,
    /// How its value is compared.
    pub matches: HeaderMatch,
}

/// The canary of a route: where requests go when the rules pick it, and the rules.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The canary's backend (its own Service's pool).
    pub target: Target,
    /// ingress-nginx's name of the canary backend (`namespace-service-port`):
    /// `$proxy_alternative_upstream_name` and the `canary` metric label.
    pub name: Arc<str>,
    /// `canary-by-header`, checked first.
    pub header: Option<CanaryHeader>,
    /// `canary-by-cookie`, checked second: `always` or `never`.
    pub cookie: Option<Box<str>>,
    /// `canary-weight`, last: requests out of [`Canary::weight_total`] sent to the canary.
    pub weight: u32,
    /// `canary-weight-total` (values below 100 count as 100, as ingress-nginx).
    pub weight_total: u32,
}

/// ingress-nginx's name of a backend: `namespace-service-port` from the pool key
/// `namespace/service:port`, or `upstream-default-backend`.
pub fn upstream_name(target: &Target) -> String {
    match target {
        Target::Pool(p) => p.key().0.replace(['/', ':'], "-"),
        Target::NotFound => "upstream-default-backend".into(),
    }
}

impl Canary {
    /// A canary sending requests to `target` only by weight 0 (never) until rules are set.
    pub fn new(target: Target) -> Self {
        Canary {
            name: upstream_name(&target).into(),
            target,
            header: None,
            cookie: None,
            weight: 0,
            weight_total: 100,
        }
    }

    /// Whether this request goes to the canary: header, then cookie, then weight.
    pub fn takes(&self, req: &RequestHeader) -> bool {
        if let Some(h) = &self.header {
            if let Some(v) = req.headers.get(&h.name) {
                let v = v.as_bytes();
                match &h.matches {
                    HeaderMatch::Value(want) if v == want.as_bytes() => return true,
                    HeaderMatch::Pattern(p) if p.is_match(v) => return true,
                    HeaderMatch::Unusable => return false,
                    HeaderMatch::AlwaysNever if v == b"always" => return true,
                    HeaderMatch::AlwaysNever if v == b"never" => return false,
                    _ => {}
                }
            }
        }
        if let Some(name) = &self.cookie {
            match cookie(req, name) {
                Some(b"always") => return true,
                Some(b"never") => return false,
                _ => {}
            }
        }
        self.by_weight()
    }

    /// `canary-weight`: a uniform draw in `1..=total` at most the weight.
    fn by_weight(&self) -> bool {
        let total = self.weight_total.max(100);
        if self.weight == 0 {
            false
        } else if self.weight >= total {
            true
        } else {
            fastrand::u32(1..=total) <= self.weight
        }
    }
}

/// The value of the first cookie called `name` (compared without case, as nginx's `$cookie_`).
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let eq = pair.iter().position(|&b| b == b'=')?;
            pair[..eq]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &pair[eq + 1..])
        })
}

fn target_key(t: &Target) -> Option<&str> {
    match t {
        Target::Pool(p) => Some(&p.key().0),
        Target::NotFound => None,
    }
}

impl PartialEq for Canary {
    fn eq(&self, other: &Self) -> bool {
        target_key(&self.target) == target_key(&other.target)
            && self.name == other.name
            && self.header.as_ref().map(|h| (&h.name, h.matches.key()))
                == other.header.as_ref().map(|h| (&h.name, h.matches.key()))
            && self.cookie == other.cookie
            && (self.weight, self.weight_total) == (other.weight, other.weight_total)
    }
}

impl Eq for Canary {}

impl Hash for Canary {
    fn hash<H: Hasher>(&self, state: &mut H) {
        target_key(&self.target).hash(state);
        self.name.hash(state);
        self.header
            .as_ref()
            .map(|h| (&h.name, h.matches.key()))
            .hash(state);
        self.cookie.hash(state);
        (self.weight, self.weight_total).hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn canary(matches: HeaderMatch) -> Canary {
        Canary {
            header: Some(CanaryHeader {
                name: HeaderName::from_static("x-canary"),
                matches,
            }),
            cookie: Some("Canary".into()),
            ..Canary::new(Target::NotFound)
        }
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let c = canary(HeaderMatch::AlwaysNever);
        assert!(c.takes(&req(&[("X-Canary", "always")])));
        assert!(!c.takes(&req(&[("X-Canary", "never"), ("Cookie", "Canary=always")])));
        assert!(c.takes(&req(&[
            ("X-Canary", "other"),
            ("Cookie", "a=b; canary=always")
        ])));
        assert!(!c.takes(&req(&[("Cookie", "Canary=never")])));
        assert!(!c.takes(&req(&[])), "weight 0");
        let all = Canary {
            weight: 100,
            ..c.clone()
        };
        assert!(all.takes(&req(&[])));
        assert!(!all.takes(&req(&[("Cookie", "x=1;Canary=never")])));
        assert!(!all.takes(&req(&[("X-Canary", "never"), ("Cookie", "Canary=always")])));
    }

    #[test]
    fn value_and_pattern_only_match_or_fall_through() {
        let c = canary(HeaderMatch::Value("yes".into()));
        assert!(c.takes(&req(&[("X-Canary", "yes")])));
        assert!(!c.takes(&req(&[("X-Canary", "always")])));
        assert!(c.takes(&req(&[("X-Canary", "never"), ("Cookie", "Canary=always")])));
        let p = canary(HeaderMatch::Pattern(
            regex::bytes::Regex::new("^v[0-9]$").unwrap(),
        ));
        assert!(p.takes(&req(&[("X-Canary", "v2")])));
        assert!(!p.takes(&req(&[("X-Canary", "v22")])));
        assert!(p.takes(&req(&[("X-Canary", "v22"), ("Cookie", "Canary=always")])));
        let u = canary(HeaderMatch::Unusable);
        assert!(!u.takes(&req(&[("X-Canary", "always"), ("Cookie", "Canary=always")])));
        assert!(u.takes(&req(&[("Cookie", "Canary=always")])));
    }

    #[test]
    fn weight_total_below_100_counts_as_100() {
        let c = Canary {
            weight: 50,
            weight_total: 50,
            ..Canary::new(Target::NotFound)
        };
        let n = (0..10_000).filter(|_| c.by_weight()).count();
        assert!((4_000..6_000).contains(&n), "{n}");
        let big = Canary {
            weight: 200,
            weight_total: 200,
            ..Canary::new(Target::NotFound)
        };
        assert!(big.by_weight());
    }
}

//! Rewrite phase: `app-root`, `permanent-redirect` / `temporal-redirect`, and the URI, `Host` and
//! `X-Forwarded-Prefix` sent upstream (`rewrite-target`, `upstream-vhost`, `x-forwarded-prefix`).
//!
//! As ingress-nginx's location block: `app-root` (302 from `/`) comes first, then the redirect
//! URL, then the HTTPS redirect; a request that is proxied has its URI rewritten with the
//! captures of its route's path regex (`rewrite "(?i)<path>" <target> break;`).

use http::{HeaderValue, StatusCode};
use pingora::http::RequestHeader;
use regex::Regex;

use super::{LocalResponse, StepRequest};

/// The rewrite and redirect settings of a route (all optional; the piece is only set when one
/// is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Rewrite {
    /// `app-root`: requests for `/` get a 302 to `scheme://<Host header><app_root>`.
    pub app_root: Option<Box<str>>,
    /// `permanent-redirect` / `temporal-redirect`: every request gets this redirect.
    pub redirect: Option<UrlRedirect>,
    /// `rewrite-target`: the path sent upstream, with `$1`…`$9` replaced by the captures of the
    /// route's path regex. Not applied on a route whose path equals it (as ingress-nginx).
    pub target: Option<Box<str>>,
    /// `x-forwarded-prefix`: an `X-Forwarded-Prefix` header sent upstream when the URI is
    /// rewritten (captures expanded as in the target).
    pub forwarded_prefix: Option<Box<str>>,
    /// `upstream-vhost`: the `Host` header sent upstream.
    pub upstream_vhost: Option<HeaderValue>,
    /// `from-to-www-redirect`, on the route of the other name (`www.` added or removed): every
    /// request is redirected to this host, as ingress-nginx's redirect server
    /// (`scheme://host:port<URI without a trailing slash>`, the `http-redirect-code` status).
    pub www_redirect: Option<Box<str>>,
}

/// A redirect of every request of a route to a fixed URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlRedirect {
    /// The `Location`.
    pub location: HeaderValue,
    /// The status (3xx).
    pub status: StatusCode,
}

impl Rewrite {
    /// The rewrite phase's answer: `app-root` for `/`, then the fixed redirect.
    pub(super) fn answer(
        &self,
        req: &StepRequest<'_>,
        server: &crate::model::ServerPolicy,
    ) -> Option<LocalResponse> {
        if let Some(to) = &self.www_redirect {
            let uri = req
                .header()
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str());
            let uri = uri.strip_suffix('/').unwrap_or(uri);
            let port = if req.scheme() == "https" { 443 } else { 80 };
            let location = format!("{}://{to}:{port}{uri}", req.scheme());
            let status = server
                .http_redirect_code
                .unwrap_or(StatusCode::PERMANENT_REDIRECT);
            return Some(match HeaderValue::try_from(location) {
                Ok(location) => {
                    LocalResponse::page(status).with_header(http::header::LOCATION, location)
                }
                Err(_) => LocalResponse::page(StatusCode::BAD_REQUEST),
            });
        }
        if let Some(root) = &self.app_root {
            if req.path() == "/" {
                let host = req
                    .header()
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.header().uri.authority().map(|a| a.as_str()))
                    .unwrap_or(req.host());
                let location = format!("{}://{host}{root}", req.scheme());
                return Some(match HeaderValue::try_from(location) {
                    Ok(location) => LocalResponse::page(StatusCode::FOUND)
                        .with_header(http::header::LOCATION, location),
                    Err(_) => LocalResponse::page(StatusCode::BAD_REQUEST),
                });
            }
        }
        self.redirect.as_ref().map(|r| {
            LocalResponse::page(r.status).with_header(http::header::LOCATION, r.location.clone())
        })
    }

    /// The proxy phase: rewrite the upstream request's URI (when the route has a target other
    /// than its own path) and set `X-Forwarded-Prefix` and `Host`. `path` is the normalized
    /// request path; `regex` the route's path regex (`None`: the host is not in regex mode, or
    /// the request went to a host's fallback: no rewrite).
    pub(crate) fn apply_upstream(
        &self,
        route_path: &str,
        regex: Option<&Regex>,
        path: &str,
        upstream_request: &mut RequestHeader,
    ) -> pingora::Result<()> {
        // Only routes of a host in regex mode rewrite (a host's fallback route has no regex).
        let target = self.target.as_deref().filter(|t| *t != route_path);
        if let (Some(target), Some(regex)) = (target, regex) {
            let captures = regex.captures(path);
            let new_path = expand(target, captures.as_ref());
            let uri = rewritten_uri(&new_path, upstream_request.uri.query());
            let uri: http::Uri = uri.parse().map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InternalError, "rewritten URI", e)
            })?;
            upstream_request.set_uri(uri);
            if let Some(prefix) = &self.forwarded_prefix {
                let value = expand(prefix, captures.as_ref());
                if let Ok(value) = HeaderValue::try_from(value) {
                    upstream_request.insert_header("x-forwarded-prefix", value)?;
                }
            }
        }
        if let Some(host) = &self.upstream_vhost {
            upstream_request.insert_header(http::header::HOST, host.clone())?;
        }
        Ok(())
    }
}

/// `template` with nginx's `$1`…`$9` (and `$0`) replaced by the captures (empty when missing);
/// any other `$` is kept as written.
fn expand(template: &str, captures: Option<&regex::Captures<'_>>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.as_bytes().first() {
            Some(d) if d.is_ascii_digit() => {
                let n = usize::from(d - b'0');
                if let Some(m) = captures.and_then(|c| c.get(n)) {
                    out.push_str(m.as_str());
                }
                rest = &after[1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The URI nginx sends after `rewrite ... break`: the new path escaped, then its own query (if
/// the target has one) and the request's query (after `&` when the target has a query).
fn rewritten_uri(new_path: &str, query: Option<&str>) -> String {
    let (path, own_query) = match new_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (new_path, None),
    };
    let mut uri = String::with_capacity(new_path.len() + query.map_or(0, str::len) + 2);
    if !path.starts_with('/') {
        uri.push('/');
    }
    for &b in path.as_bytes() {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'#' | b'%' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    let query = query.filter(|q| !q.is_empty());
    match (own_query, query) {
        (Some(own), Some(q)) => {
            uri.push('?');
            uri.push_str(own);
            if !own.is_empty() {
                uri.push('&');
            }
            uri.push_str(q);
        }
        (Some(own), None) if !own.is_empty() => {
            uri.push('?');
            uri.push_str(own);
        }
        (None, Some(q)) => {
            uri.push('?');
            uri.push_str(q);
        }
        _ => {}
    }
    uri
}

/// The regex of a path in a host's regex mode: nginx's `location ~* "^<path>"`, case-insensitive
/// and anchored at the start only.
pub fn path_regex(path: &str) -> Result<Regex, regex::Error> {
    Regex::new(&path_pattern(path))
}

/// The pattern of [`path_regex`].
pub(crate) fn path_pattern(path: &str) -> String {
    format!("(?i)^{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(route: &str, target: &str, path_and_query: &str) -> String {
        let r = Rewrite {
            target: Some(target.into()),
            forwarded_prefix: Some("/$1".into()),
            ..Default::default()
        };
        let regex = path_regex(route).unwrap();
        let mut req = RequestHeader::build("GET", path_and_query.as_bytes(), None).unwrap();
        let path = req.uri.path().to_string();
        r.apply_upstream(route, Some(&regex), &path, &mut req)
            .unwrap();
        req.uri.to_string()
    }

    #[test]
    fn the_documented_example() {
        let route = "/something(/|$)(.*)";
        assert_eq!(rewrite(route, "/$2", "/something"), "/");
        assert_eq!(rewrite(route, "/$2", "/something/"), "/");
        assert_eq!(rewrite(route, "/$2", "/something/new"), "/new");
        assert_eq!(rewrite(route, "/$2", "/SOMETHING/new?a=b"), "/new?a=b");
        assert_eq!(rewrite(route, "/x?y=1", "/something?a=b"), "/x?y=1&a=b");
        assert_eq!(rewrite(route, "/$9/$2", "/something/a"), "//a");
    }

    #[test]
    fn same_target_as_path_is_not_rewritten() {
        assert_eq!(rewrite("/a", "/a", "/a/b?q"), "/a/b?q");
        assert_eq!(rewrite("/a", "/", "/a/b?q"), "/?q");
    }

    #[test]
    fn expansion_keeps_other_dollars() {
        let re = Regex::new("^/(a)(b)").unwrap();
        let c = re.captures("/ab").unwrap();
        assert_eq!(expand("/$1-$2-$3-$x-$", Some(&c)), "/a-b--$x-$");
        assert_eq!(expand("/$1", None), "/");
        assert_eq!(rewritten_uri("/a b", None), "/a%20b");
        assert_eq!(rewritten_uri("x", Some("")), "/x");
    }

    #[test]
    fn app_root_then_redirect() {
        let r = Rewrite {
            app_root: Some("/app".into()),
            redirect: Some(UrlRedirect {
                location: HeaderValue::from_static("https://e.test/"),
                status: StatusCode::MOVED_PERMANENTLY,
            }),
            ..Default::default()
        };
        let mut header = RequestHeader::build("GET", b"/", None).unwrap();
        header.insert_header("host", "a.test:8080").unwrap();
        let answer = |path| {
            let req = StepRequest::new(&header, None, false, "a.test", path);
            let a = r.answer(&req, &Default::default()).unwrap();
            (
                a.status.as_u16(),
                a.headers["location"].to_str().unwrap().to_string(),
            )
        };
        assert_eq!(answer("/"), (302, "http://a.test:8080/app".to_string()));
        assert_eq!(answer("/x"), (301, "https://e.test/".to_string()));
    }

    #[tokio::test]
    async fn fixed_redirects_come_before_the_https_redirect() {
        let header = RequestHeader::build("GET", b"/x", None).unwrap();
        let req = StepRequest::new(&header, None, false, "a.test", "/x");
        let mut p = super::super::RoutePolicy {
            https_redirect: Some(super::super::HttpsRedirect::default()),
            rewrite: Some(Box::new(Rewrite {
                redirect: Some(UrlRedirect {
                    location: HeaderValue::from_static("https://e.test/"),
                    status: StatusCode::FOUND,
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let server = crate::model::ServerPolicy::default();
        let status = |p: &super::super::RoutePolicy| {
            let p = p.clone();
            let server = server.clone();
            async move {
                super::super::on_request(&p, &req, &server, &mut None)
                    .await
                    .map(|a| a.status.as_u16())
            }
        };
        assert_eq!(status(&p).await, Some(302));
        p.rewrite = None;
        assert_eq!(status(&p).await, Some(308));
    }
}

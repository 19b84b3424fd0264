//! Every annotation ingress-nginx (v1.15) documents or parses, with what Weir does with it.
//!
//! [`ANNOTATIONS`] is plain data sorted by name, so [`lookup`] is a binary search that allocates
//! nothing. [`markdown`] renders `docs/annotations.md` from it; the test
//! `k8s-sync/tests/annotations_doc.rs` keeps that page in step (`WEIR_BLESS=1` rewrites it).

use std::fmt::Write as _;

/// What Weir does with an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Applied by Weir.
    Implemented,
    /// Never applied (nginx snippets): reported, the rest of the Ingress is served.
    Refused,
    /// Not supported yet: reported and ignored, or 503 when it guards access.
    NotYet,
}

impl Status {
    /// Every status, in the order the documentation counts them.
    pub const ALL: [Status; 3] = [Status::Implemented, Status::Refused, Status::NotYet];

    /// The word used in the documentation.
    pub const fn label(self) -> &'static str {
        match self {
            Status::Implemented => "implemented",
            Status::Refused => "refused",
            Status::NotYet => "not yet",
        }
    }
}

/// The group an annotation is documented in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// HTTPS and other redirects.
    Redirect,
    /// Path rewriting and regular-expression paths.
    Rewrite,
    /// Client source address allow and deny lists.
    Access,
    /// Basic and digest authentication, `satisfy`.
    Auth,
    /// Authentication by an external service (`auth-url`).
    ExternalAuth,
    /// Client certificate authentication (`auth-tls-*`).
    ClientCert,
    /// Request, connection and bandwidth limits.
    Limits,
    /// Canary Ingresses.
    Canary,
    /// Cross-origin resource sharing.
    Cors,
    /// Request and response headers.
    Headers,
    /// Backend timeouts and retries.
    Upstream,
    /// Which backend is used and how it is spoken to.
    Backend,
    /// TLS from Weir to the backend (`proxy-ssl-*`).
    BackendTls,
    /// Sticky sessions.
    Affinity,
    /// Load-balancing algorithms.
    LoadBalancing,
    /// Request body limits and buffering.
    Body,
    /// Custom error pages.
    ErrorPages,
    /// Access and rewrite logs.
    Logging,
    /// TLS between clients and Weir.
    Tls,
    /// Raw nginx configuration.
    Snippets,
    /// Request mirroring.
    Mirror,
    /// The ModSecurity web application firewall.
    ModSecurity,
    /// OpenTelemetry tracing.
    Tracing,
    /// Everything else.
    Misc,
}

impl Family {
    /// Every family, in the order of the documentation.
    pub const ALL: [Family; 24] = [
        Family::Redirect,
        Family::Rewrite,
        Family::Access,
        Family::Auth,
        Family::ExternalAuth,
        Family::ClientCert,
        Family::Limits,
        Family::Canary,
        Family::Cors,
        Family::Headers,
        Family::Upstream,
        Family::Backend,
        Family::BackendTls,
        Family::Affinity,
        Family::LoadBalancing,
        Family::Body,
        Family::ErrorPages,
        Family::Logging,
        Family::Tls,
        Family::Snippets,
        Family::Mirror,
        Family::ModSecurity,
        Family::Tracing,
        Family::Misc,
    ];

    /// The section title in the documentation.
    pub const fn title(self) -> &'static str {
        match self {
            Family::Redirect => "Redirects",
            Family::Rewrite => "Rewrites and regular expressions",
            Family::Access => "Source address lists",
            Family::Auth => "Basic and digest authentication",
            Family::ExternalAuth => "External authentication",
            Family::ClientCert => "Client certificates",
            Family::Limits => "Rate limits",
            Family::Canary => "Canary",
            Family::Cors => "CORS",
            Family::Headers => "Headers",
            Family::Upstream => "Timeouts and retries",
            Family::Backend => "Backends",
            Family::BackendTls => "TLS to the backend",
            Family::Affinity => "Session affinity",
            Family::LoadBalancing => "Load balancing",
            Family::Body => "Request body and buffering",
            Family::ErrorPages => "Error pages",
            Family::Logging => "Logging",
            Family::Tls => "TLS termination",
            Family::Snippets => "nginx snippets",
            Family::Mirror => "Mirroring",
            Family::ModSecurity => "ModSecurity",
            Family::Tracing => "OpenTelemetry",
            Family::Misc => "Other",
        }
    }
}

/// One annotation ingress-nginx documents, and Weir's status for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotation {
    /// Name without the prefix, e.g. `rewrite-target`.
    pub name: &'static str,
    /// Documentation group.
    pub family: Family,
    /// What Weir does with it.
    pub status: Status,
    /// It restricts who may reach the backend (authentication, client certificates, source
    /// lists, `satisfy`): when it is not implemented the Ingress answers 503 instead of serving
    /// without it (see [`Annotation::fails_closed`]).
    pub guards_access: bool,
    /// What it does in ingress-nginx, in one line.
    pub summary: &'static str,
    /// Where Weir differs, or why it is refused; empty otherwise.
    pub weir: &'static str,
}

impl Annotation {
    /// An Ingress carrying this annotation answers 503 on every route: it guards access and
    /// Weir does not support it yet. (A refused snippet never does: it is reported, not applied.)
    pub const fn fails_closed(&self) -> bool {
        self.guards_access && matches!(self.status, Status::NotYet)
    }
}

const SNIPPET: &str = "nginx snippets do not exist in Weir, and ingress-nginx disables them by default (CVE-2021-25742); reported, the rest of the Ingress is served";
const FAIL_CLOSED: &str =
    "Not supported yet: every route of the Ingress answers 503 until it is (fail closed)";

const fn not_yet(name: &'static str, family: Family, summary: &'static str) -> Annotation {
    Annotation {
        name,
        family,
        status: Status::NotYet,
        guards_access: false,
        summary,
        weir: "",
    }
}

/// Not supported yet and guards access: the Ingress answers 503.
const fn guard(name: &'static str, family: Family, summary: &'static str) -> Annotation {
    Annotation {
        name,
        family,
        status: Status::NotYet,
        guards_access: true,
        summary,
        weir: FAIL_CLOSED,
    }
}

const fn implemented(
    name: &'static str,
    family: Family,
    guards_access: bool,
    summary: &'static str,
    weir: &'static str,
) -> Annotation {
    Annotation {
        name,
        family,
        status: Status::Implemented,
        guards_access,
        summary,
        weir,
    }
}

/// Why the global rate limit annotations are refused.
const REMOVED_GLOBAL_LIMIT: &str = "Refused: ingress-nginx removed its memcached-backed global rate limiter in controller v1.12 (kubernetes/ingress-nginx#11851). Reported, and no limit applies; `limit-rps` and `limit-rpm` count per replica ([limits](limits.md))";

/// An annotation of the global rate limiter ingress-nginx removed: reported, not applied.
const fn removed_global_limit(name: &'static str, summary: &'static str) -> Annotation {
    Annotation {
        name,
        family: Family::Limits,
        status: Status::Refused,
        guards_access: false,
        summary,
        weir: REMOVED_GLOBAL_LIMIT,
    }
}

const fn snippet(name: &'static str, guards_access: bool, summary: &'static str) -> Annotation {
    Annotation {
        name,
        family: Family::Snippets,
        status: Status::Refused,
        guards_access,
        summary,
        weir: SNIPPET,
    }
}

use Family as F;

/// Every annotation, sorted by name (checked by a test).
#[rustfmt::skip] // one row per annotation
pub static ANNOTATIONS: &[Annotation] = &[
    not_yet("affinity", F::Affinity, "Sticky sessions for the Ingress's backends; the only type is `cookie`"),
    not_yet("affinity-canary-behavior", F::Affinity, "`sticky` (default): clients sent to a canary stay on it; `legacy`: canary rules are applied again"),
    not_yet("affinity-mode", F::Affinity, "`balanced` (default) moves some sessions when backends scale; `persistent` never does"),
    implemented("allowlist-source-range", F::Access, true, "Only clients from these comma-separated CIDRs reach the backend; others get 403", "An unparsable list makes every route of the Ingress answer 503 until fixed ([allow and deny lists](tls.md#allow-and-deny-lists))"),
    implemented("app-root", F::Redirect, false, "Redirects requests for `/` to this path", "302 to `scheme://<Host header><path>`; comes before `permanent-redirect`, `temporal-redirect` and the HTTPS redirect ([rewrites](rewrites.md))"),
    implemented("auth-always-set-cookie", F::ExternalAuth, true, "Passes cookies set by the auth service to the client on every response, not only successful ones", ""),
    implemented("auth-cache-duration", F::ExternalAuth, true, "How long auth responses are cached, per status code (e.g. `200 202 10m`)", "Answers with `Set-Cookie` or `Cache-Control: no-store`/`no-cache`/`private` are not cached; the cache is in memory, per process (at most 10,000 answers)"),
    implemented("auth-cache-key", F::ExternalAuth, true, "Enables caching of auth responses under this key", ""),
    implemented("auth-keepalive", F::ExternalAuth, true, "Idle keepalive connections kept to the auth service", "Connections come from one process-wide pool of idle connections (up to 256), reused only when `auth-keepalive` is above 0"),
    implemented("auth-keepalive-requests", F::ExternalAuth, true, "Requests served by one keepalive connection to the auth service", "Checked as ingress-nginx (0 or less turns keepalive off); Weir does not close a connection after that many requests"),
    guard("auth-keepalive-share-vars", F::ExternalAuth, "Shares request variables (such as the request ID) with the auth request"),
    implemented("auth-keepalive-timeout", F::ExternalAuth, true, "Idle timeout of keepalive connections to the auth service, in seconds", ""),
    implemented("auth-method", F::ExternalAuth, true, "HTTP method of the auth request", ""),
    implemented("auth-proxy-set-headers", F::ExternalAuth, true, "ConfigMap of headers sent to the auth service", "The ConfigMap must be in the Ingress's namespace; it is read again at each change"),
    implemented("auth-realm", F::Auth, true, "Realm shown in the authentication prompt", "A value with characters other than letters, digits, spaces and `-._~/:` makes every route of the Ingress answer 503 ([basic authentication](auth.md))"),
    implemented("auth-request-redirect", F::ExternalAuth, true, "Value of the `X-Auth-Request-Redirect` header sent to the auth service", ""),
    implemented("auth-response-headers", F::ExternalAuth, true, "Headers of the auth response copied to the backend request", ""),
    implemented("auth-secret", F::Auth, true, "Secret holding the users and password hashes", "Same namespace as the Ingress only (ingress-nginx's default); a missing Secret or key makes every route of the Ingress answer 503; re-read when it changes; hashes: bcrypt, apr1, `{SHA}`, `{SSHA}`, `{PLAIN}`, DES, MD5-, SHA-256- and SHA-512-crypt ([basic authentication](auth.md))"),
    implemented("auth-secret-type", F::Auth, true, "Format of that Secret: `auth-file` (htpasswd under key `auth`) or `auth-map` (one key per user)", "Another value makes every route of the Ingress answer 503, as ingress-nginx ([basic authentication](auth.md))"),
    implemented("auth-signin", F::ExternalAuth, true, "Where clients are redirected when the auth service answers 401", ""),
    implemented("auth-signin-redirect-param", F::ExternalAuth, true, "Query parameter of the sign-in URL carrying the original URL (default `rd`)", ""),
    Annotation {
        weir: "Refused like every snippet: the auth request is made without it (the Ingress is served)",
        ..snippet("auth-snippet", true, "nginx configuration added to the external-auth location")
    },
    guard("auth-tls-error-page", F::ClientCert, "URL clients are redirected to when certificate verification fails"),
    guard("auth-tls-match-cn", F::ClientCert, "Regular expression the client certificate's subject CN must match"),
    guard("auth-tls-pass-certificate-to-upstream", F::ClientCert, "Passes the client certificate to the backend in the `ssl-client-cert` header"),
    guard("auth-tls-secret", F::ClientCert, "Secret with the CA certificates client certificates are verified against"),
    guard("auth-tls-verify-client", F::ClientCert, "Client certificate verification: `on`, `off`, `optional` or `optional_no_ca`"),
    guard("auth-tls-verify-depth", F::ClientCert, "Maximum length of the client certificate chain"),
    implemented("auth-type", F::Auth, true, "`basic` or `digest` authentication against `auth-secret`", "`basic` only: `digest` (or another value) makes every route of the Ingress answer 503 (reported); successful checks are cached, bcrypt runs off the proxy threads ([basic authentication](auth.md))"),
    implemented("auth-url", F::ExternalAuth, true, "Each request is first sent to this URL; a 2xx answer lets it through, 401 or 403 is returned to the client", "Variables: `$host`, `$http_host`, `$best_http_host`, `$request_uri`, `$escaped_request_uri`, `$uri`, `$args`, `$is_args`, `$scheme`, `$request_method`, `$remote_addr`, `$http_*`, `$arg_*`, `$cookie_*`; an unknown one or a malformed URL makes the Ingress answer 503. The auth service's certificate is not verified (nginx's `proxy_ssl_verify off`) ([external authentication](external-auth.md))"),
    not_yet("backend-protocol", F::Backend, "Protocol spoken to the backend: `HTTP`, `HTTPS`, `GRPC`, `GRPCS` or `FCGI`"),
    implemented("canary", F::Canary, false, "Makes this Ingress the canary of the Ingress with the same host and path", "Only adds a backend to a main Ingress's rule with the same host, path and path type; without one it is reported and serves nothing. The canary Ingress's other annotations are ignored, the main Ingress's apply ([canary](canary.md))"),
    implemented("canary-by-cookie", F::Canary, false, "Cookie that sends a request to the canary (`always`) or never (`never`)", ""),
    implemented("canary-by-header", F::Canary, false, "Header that sends a request to the canary (`always`) or never (`never`)", ""),
    implemented("canary-by-header-pattern", F::Canary, false, "Regular expression the `canary-by-header` value must match to go to the canary", "Rust `regex` syntax, not PCRE: a pattern that does not compile (lookaround, backreferences) is reported and requests carrying the header go to the main backend, as ingress-nginx does when the pattern fails"),
    implemented("canary-by-header-value", F::Canary, false, "Exact `canary-by-header` value that sends a request to the canary", ""),
    implemented("canary-weight", F::Canary, false, "Share of requests sent to the canary, out of `canary-weight-total`", ""),
    implemented("canary-weight-total", F::Canary, false, "Total of the canary weight (default 100)", "Values below 100 count as 100, as in ingress-nginx"),
    implemented("client-body-buffer-size", F::Body, false, "Memory buffer for the request body before it is spilled to a file", "Bodies announced (`Content-Length`) up to this size, at most 64 KiB, are read in full before an endpoint is connected; nothing is written to disk ([request bodies](routing.md#request-bodies))"),
    snippet("configuration-snippet", false, "nginx configuration added to the location of each path"),
    not_yet("connection-proxy-header", F::Headers, "Value of the `Connection` header sent to the backend"),
    implemented("cors-allow-credentials", F::Cors, false, "`Access-Control-Allow-Credentials` (default `true`)", ""),
    implemented("cors-allow-headers", F::Cors, false, "`Access-Control-Allow-Headers`", "A value that is not a list of header names keeps the default (reported)"),
    implemented("cors-allow-methods", F::Cors, false, "`Access-Control-Allow-Methods`", "A value that is not a list of methods keeps the default (reported)"),
    implemented("cors-allow-origin", F::Cors, false, "Origins allowed (default `*`); one is echoed in `Access-Control-Allow-Origin`", "Origins are `scheme://host[:port]` (a leading `*.` matches one label) or `null`, compared without regard to case from the start of the `Origin` (ingress-nginx anchors only the end); bad entries are skipped (reported)"),
    implemented("cors-expose-headers", F::Cors, false, "`Access-Control-Expose-Headers`", ""),
    implemented("cors-max-age", F::Cors, false, "`Access-Control-Max-Age`: how long preflight answers may be cached, in seconds", ""),
    implemented("custom-headers", F::Headers, false, "ConfigMap (namespace/name) of headers added to responses", "Every header name must be listed in the ConfigMap key `global-allowed-response-headers` (empty by default); a missing ConfigMap, or a header not allowed or invalid, makes every route of the Ingress answer 503, as ingress-nginx. The ConfigMap is re-read when it changes ([custom headers](headers.md#custom-headers))"),
    implemented("custom-http-errors", F::ErrorPages, false, "Responses with these status codes are replaced by the default backend's error page", "Replaces the ConfigMap's list for the Ingress; the backend is asked with the client's method and headers plus `X-Code` and friends, without the request body; the client gets the backend's status and body ([custom error pages](headers.md#custom-error-pages))"),
    implemented("default-backend", F::Backend, false, "Service (same namespace) that answers when the rule's Service has no endpoints, and serves custom errors", "Its first port is used; for a Service without endpoints the request goes there with `X-Code: 503` and its original path, without its body ([custom error pages](headers.md#custom-error-pages))"),
    implemented("denylist-source-range", F::Access, true, "Clients from these comma-separated CIDRs get 403", "Checked before the allow list; an unparsable list makes every route of the Ingress answer 503 until fixed ([allow and deny lists](tls.md#allow-and-deny-lists))"),
    implemented("disable-proxy-intercept-errors", F::ErrorPages, false, "With `custom-http-errors`, passes the backend's own error responses through", "Errors Weir produces itself (502, 503, 504) still get the custom page, as nginx's `error_page`"),
    implemented("enable-access-log", F::Logging, false, "Turns access logging off (or on) for the Ingress", "Default `true`; the lines go to stdout in the ConfigMap's `log-format-upstream` ([access log](logging.md))"),
    implemented("enable-cors", F::Cors, false, "Answers CORS preflight requests and adds CORS headers to responses", "Any `OPTIONS` request from an allowed origin is answered 204 before redirects and access lists, as ingress-nginx; other responses from the backend get the CORS headers, replacing the backend's ([CORS](headers.md#cors))"),
    implemented("enable-global-auth", F::ExternalAuth, true, "Whether the ConfigMap's global external authentication applies (default `true`)", ""),
    not_yet("enable-modsecurity", F::ModSecurity, "Enables the ModSecurity web application firewall"),
    not_yet("enable-opentelemetry", F::Tracing, "Turns OpenTelemetry tracing on or off for the Ingress"),
    not_yet("enable-owasp-core-rules", F::ModSecurity, "Loads the OWASP Core Rule Set into ModSecurity"),
    not_yet("enable-rewrite-log", F::Logging, "Logs nginx rewrite processing at notice level"),
    not_yet("fastcgi-index", F::Backend, "FastCGI index file (with `backend-protocol: FCGI`)"),
    not_yet("fastcgi-params-configmap", F::Backend, "ConfigMap of FastCGI parameters (with `backend-protocol: FCGI`)"),
    implemented("force-ssl-redirect", F::Redirect, false, "Redirects plain-HTTP requests to HTTPS even when the host has no TLS", ""),
    implemented("from-to-www-redirect", F::Redirect, false, "Redirects `www.host` to `host`, or the reverse, whichever the rule does not name", "Not when an Ingress names the other host; the redirect's port is 80 or 443 by scheme (ingress-nginx shows its listener's port) ([rewrites](rewrites.md))"),
    removed_global_limit("global-rate-limit", "Requests per window for all replicas together, counted in memcached (ingress-nginx before v1.12)"),
    removed_global_limit("global-rate-limit-ignored-cidrs", "Client networks the global rate limit does not count (ingress-nginx before v1.12)"),
    removed_global_limit("global-rate-limit-key", "What the global rate limit counts by, nginx variables (default `$remote_addr`; ingress-nginx before v1.12)"),
    removed_global_limit("global-rate-limit-window", "Window of the global rate limit, e.g. `1m` (ingress-nginx before v1.12)"),
    not_yet("http2-push-preload", F::Misc, "Turns `Link: rel=preload` response headers into HTTP/2 server pushes"),
    implemented("limit-allowlist", F::Limits, false, "Client CIDRs exempt from the rate limits", "Exempt from `limit-rps`, `limit-rpm` and `limit-connections`, not from `limit-rate`, as ingress-nginx. An unparsable list is reported and the limits apply to every address (ingress-nginx drops the Ingress's limits instead) ([limits](limits.md))"),
    implemented("limit-burst-multiplier", F::Limits, false, "Burst allowed above `limit-rps`/`limit-rpm`, as a multiple of the limit (default 5)", ""),
    implemented("limit-connections", F::Limits, false, "Concurrent connections allowed per client address", "Counts requests in progress per client address on the Ingress, as nginx's `limit_conn` (`limit-conn-status-code`, default 503) ([limits](limits.md))"),
    implemented("limit-rate", F::Limits, false, "Response bandwidth per connection, in kilobytes per second", "Per request, counted from the start of the request; nginx also lets one second's worth through at once ([limits](limits.md))"),
    implemented("limit-rate-after", F::Limits, false, "Kilobytes sent at full speed before `limit-rate` applies", ""),
    implemented("limit-rpm", F::Limits, false, "Requests per minute allowed per client address", "Leaky bucket with burst and `nodelay` as nginx; counts are kept per replica in a fixed-size table per Ingress ([limits](limits.md))"),
    implemented("limit-rps", F::Limits, false, "Requests per second allowed per client address", "Leaky bucket with burst and `nodelay` as nginx (`limit-req-status-code`, default 503); with `limit-rpm` both apply; counts are kept per replica in a fixed-size table per Ingress ([limits](limits.md))"),
    implemented("limit-whitelist", F::Limits, false, "Alias of `limit-allowlist`", ""),
    not_yet("load-balance", F::LoadBalancing, "Load-balancing algorithm: `round_robin` or `ewma`"),
    not_yet("mirror-host", F::Mirror, "Host header of mirrored requests"),
    not_yet("mirror-request-body", F::Mirror, "Whether mirrored requests carry the body (default `on`)"),
    not_yet("mirror-target", F::Mirror, "URL each request is also sent to; its response is discarded"),
    snippet("modsecurity-snippet", false, "ModSecurity rules added for the Ingress"),
    not_yet("modsecurity-transaction-id", F::ModSecurity, "nginx variable used as the ModSecurity transaction ID"),
    not_yet("opentelemetry-operation-name", F::Tracing, "Name of the server span"),
    not_yet("opentelemetry-trust-incoming-span", F::Tracing, "Whether an incoming trace context becomes the parent of the span"),
    implemented("permanent-redirect", F::Redirect, false, "Answers every request with a redirect (301) to this URL", "Comes before the HTTPS redirect; `temporal-redirect` wins over it ([rewrites](rewrites.md))"),
    implemented("permanent-redirect-code", F::Redirect, false, "Status code of `permanent-redirect` instead of 301", "A code outside 300–308 means 301, as ingress-nginx"),
    implemented("preserve-trailing-slash", F::Redirect, false, "Keeps a trailing `/` in the HTTPS redirect", ""),
    implemented("proxy-body-size", F::Body, false, "Largest request body accepted (413 above); default `1m`", "Checked on `Content-Length` before anything is sent, and while a chunked body streams: the upstream request is aborted, never completed with a truncated body ([request bodies](routing.md#request-bodies))"),
    not_yet("proxy-buffer-size", F::Body, "Buffer for the first part of the backend response (its headers)"),
    not_yet("proxy-buffering", F::Body, "Buffers backend responses (`on`) or streams them (`off`, default)"),
    not_yet("proxy-buffers-number", F::Body, "Number of buffers for a backend response"),
    not_yet("proxy-busy-buffers-size", F::Body, "Buffers that may be busy sending to the client before the response is fully read"),
    implemented("proxy-connect-timeout", F::Upstream, false, "Timeout to connect to the backend, in seconds", ""),
    not_yet("proxy-cookie-domain", F::Headers, "Rewrites the `Domain` attribute of `Set-Cookie` headers from the backend"),
    not_yet("proxy-cookie-path", F::Headers, "Rewrites the `Path` attribute of `Set-Cookie` headers from the backend"),
    not_yet("proxy-http-version", F::Backend, "HTTP version spoken to the backend: `1.0` or `1.1`"),
    not_yet("proxy-max-temp-file-size", F::Body, "Largest temporary file used to buffer a backend response"),
    implemented("proxy-next-upstream", F::Upstream, false, "Failures after which the request is retried on another endpoint (e.g. `error timeout`)", "`error timeout http_500 http_502 http_503 http_504 http_403 http_404 http_429 non_idempotent off`; `invalid_header` and `denied` are not accepted ([retries](routing.md#retries-and-timeouts))"),
    implemented("proxy-next-upstream-timeout", F::Upstream, false, "Time limit for trying further endpoints, in seconds", ""),
    implemented("proxy-next-upstream-tries", F::Upstream, false, "Number of endpoints a request may be tried on", "`0` (no limit) and larger values try at most 8 endpoints"),
    implemented("proxy-read-timeout", F::Upstream, false, "Timeout between two reads from the backend, in seconds", ""),
    not_yet("proxy-redirect-from", F::Headers, "Text replaced in `Location` and `Refresh` headers from the backend"),
    not_yet("proxy-redirect-to", F::Headers, "Replacement for `proxy-redirect-from`"),
    implemented("proxy-request-buffering", F::Body, false, "Reads the whole request body before sending it to the backend (`on`, default) or streams it", "`on` reads bodies up to `client-body-buffer-size` (at most 64 KiB) before connecting; larger bodies stream with bounded memory ([request bodies](routing.md#request-bodies))"),
    implemented("proxy-send-timeout", F::Upstream, false, "Timeout between two writes to the backend, in seconds", ""),
    not_yet("proxy-ssl-ciphers", F::BackendTls, "Cipher suites offered to an HTTPS backend"),
    not_yet("proxy-ssl-name", F::BackendTls, "Server name checked in the backend certificate and sent as SNI"),
    not_yet("proxy-ssl-protocols", F::BackendTls, "TLS versions offered to an HTTPS backend"),
    not_yet("proxy-ssl-secret", F::BackendTls, "Secret with the client certificate and the CA used for an HTTPS backend"),
    not_yet("proxy-ssl-server-name", F::BackendTls, "Sends SNI to an HTTPS backend"),
    not_yet("proxy-ssl-verify", F::BackendTls, "Verifies the backend certificate (default `off`)"),
    not_yet("proxy-ssl-verify-depth", F::BackendTls, "Maximum length of the backend certificate chain"),
    not_yet("relative-redirects", F::Redirect, "Redirects issued by nginx carry a relative `Location`"),
    implemented("rewrite-target", F::Rewrite, false, "Path sent to the backend instead of the matched one; may use regex captures such as `$1`", "Puts every path of the host in regex mode, as ingress-nginx; the `regex` crate: no lookaround or backreferences ([rewrites](rewrites.md))"),
    implemented("satisfy", F::Auth, true, "`any`: a request passing either authentication or the source allow list is let through (default `all`)", "Between the source lists and basic authentication; a value other than `any` or `all` makes every route of the Ingress answer 503 (ingress-nginx uses `all`) ([basic authentication](auth.md#satisfy))"),
    implemented("server-alias", F::Misc, false, "Extra host names served like the Ingress's host", "Comma-separated; the oldest Ingress of a host with aliases names them; a name that is the host of an Ingress is not an alias, as ingress-nginx ([rewrites](rewrites.md))"),
    snippet("server-snippet", false, "nginx configuration added to the server block of each host"),
    not_yet("service-upstream", F::Backend, "Proxies to the Service's cluster IP instead of its endpoints"),
    not_yet("session-cookie-change-on-failure", F::Affinity, "Picks a new endpoint and cookie when the sticky one fails"),
    not_yet("session-cookie-conditional-samesite-none", F::Affinity, "Omits `SameSite=None` for browsers that mishandle it"),
    not_yet("session-cookie-domain", F::Affinity, "`Domain` attribute of the affinity cookie"),
    not_yet("session-cookie-expires", F::Affinity, "`Expires` attribute of the affinity cookie, in seconds from now"),
    not_yet("session-cookie-max-age", F::Affinity, "`Max-Age` attribute of the affinity cookie, in seconds"),
    not_yet("session-cookie-name", F::Affinity, "Name of the affinity cookie (default `INGRESSCOOKIE`)"),
    not_yet("session-cookie-path", F::Affinity, "`Path` attribute of the affinity cookie"),
    not_yet("session-cookie-samesite", F::Affinity, "`SameSite` attribute of the affinity cookie: `None`, `Lax` or `Strict`"),
    not_yet("session-cookie-secure", F::Affinity, "Sets `Secure` on the affinity cookie even for plain-HTTP requests"),
    not_yet("ssl-ciphers", F::Tls, "Cipher suites offered to clients of the host"),
    not_yet("ssl-passthrough", F::Tls, "Passes TLS connections to the backend undecrypted, chosen by SNI"),
    not_yet("ssl-prefer-server-ciphers", F::Tls, "Prefers the server's cipher order over the client's"),
    implemented("ssl-redirect", F::Redirect, false, "Redirects plain-HTTP requests to HTTPS on hosts with TLS (default `true`)", "Redirects with 308; default from the ConfigMap's `ssl-redirect` ([HTTPS redirects](tls.md#https-redirects))"),
    snippet("stream-snippet", false, "nginx configuration added to the stream (TCP/UDP) block"),
    implemented("temporal-redirect", F::Redirect, false, "Answers every request with a redirect (302) to this URL", "Wins over `permanent-redirect`, as ingress-nginx"),
    implemented("temporal-redirect-code", F::Redirect, false, "Status code of `temporal-redirect` instead of 302", "A code outside 300–307 means 302, as ingress-nginx"),
    not_yet("upstream-hash-by", F::LoadBalancing, "Consistent hashing on this key (nginx variables, e.g. `$request_uri`)"),
    not_yet("upstream-hash-by-subset", F::LoadBalancing, "Hashes to a subset of endpoints instead of a single one"),
    not_yet("upstream-hash-by-subset-size", F::LoadBalancing, "Endpoints per subset (default 3)"),
    implemented("upstream-vhost", F::Headers, false, "`Host` header sent to the backend", "A host name (with optional port); nginx variables are not expanded"),
    not_yet("use-port-in-redirects", F::Redirect, "Redirects issued by nginx include the port"),
    implemented("use-regex", F::Rewrite, false, "The Ingress's paths are regular expressions", "Every path of every Ingress on the host becomes a case-insensitive regex anchored at the start, longest first; the `regex` crate: no lookaround or backreferences ([rewrites](rewrites.md))"),
    implemented("whitelist-source-range", F::Access, true, "Alias of `allowlist-source-range`", "An unparsable list makes every route of the Ingress answer 503 until fixed ([allow and deny lists](tls.md#allow-and-deny-lists))"),
    implemented("x-forwarded-prefix", F::Headers, false, "Adds an `X-Forwarded-Prefix` header with this value to backend requests", "Sent when `rewrite-target` rewrites the request, as ingress-nginx"),
];

/// The annotation named `name` (without prefix), by binary search.
pub fn lookup(name: &str) -> Option<&'static Annotation> {
    ANNOTATIONS
        .binary_search_by(|a| a.name.cmp(name))
        .ok()
        .map(|i| &ANNOTATIONS[i])
}

/// GitHub's heading anchor for a plain title.
fn anchor(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_ascii_alphanumeric() || c == '-' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// `docs/annotations.md`, with names shown under `prefix` (e.g. `nginx.ingress.kubernetes.io`).
pub fn markdown(prefix: &str) -> String {
    let count = |s: Status| ANNOTATIONS.iter().filter(|a| a.status == s).count();
    let fail_closed = ANNOTATIONS.iter().filter(|a| a.fails_closed()).count();
    let mut out = String::new();
    let w = &mut out;
    // Writing to a String cannot fail.
    let _ = write!(
        w,
        "\
# Annotations

Every annotation ingress-nginx (v1.15) documents, what it does there, and what Weir does with it.
Names are shown with the prefix `{prefix}/`, the default of `--annotations-prefix`;
annotations with another prefix are not read. Boolean values are read as ingress-nginx reads them
(`true`, `True`, `TRUE`, `1`, `t`, … and their `false` counterparts); another value is ignored
with a warning. An annotation with the prefix that ingress-nginx does not know is reported as
such (a typo, often) and ignored.

An annotation applies to every route its Ingress produces: its rules, its `spec.defaultBackend`,
the catch-all (except redirects, as ingress-nginx), and the host's unmatched paths when it is the
oldest Ingress of that host.

- **implemented**: Weir applies it; the note says where it differs from ingress-nginx.
- **refused**: Weir never applies it (nginx snippets). It is reported (a warning, and an Event in
  API mode) and the rest of the Ingress is served.
- **not yet**: not supported yet. It is reported (a warning, and an Event in API mode) and
  ignored, except an annotation that guards access (authentication, client certificates, source
  lists, `satisfy`): it makes every route of the Ingress answer **503** until it is supported
  (fail closed), so the Ingress is never served without it.

How warnings and Events are reported: [routing](routing.md#warnings).

{total} annotations: {implemented} implemented, {refused} refused, {not_yet} not yet ({fail_closed} of them guard access and answer 503).

",
        total = ANNOTATIONS.len(),
        implemented = count(Status::Implemented),
        refused = count(Status::Refused),
        not_yet = count(Status::NotYet),
    );
    let contents: Vec<String> = Family::ALL
        .iter()
        .map(|f| format!("[{}](#{})", f.title(), anchor(f.title())))
        .collect();
    let _ = writeln!(w, "Sections: {}.", contents.join(", "));
    for family in Family::ALL {
        let _ = write!(
            w,
            "\n## {}\n\n| Annotation | Status | What it does in ingress-nginx | Weir |\n|---|---|---|---|\n",
            family.title()
        );
        for a in ANNOTATIONS.iter().filter(|a| a.family == family) {
            let status = match a.status {
                Status::Implemented => format!("**{}**", a.status.label()),
                _ => a.status.label().to_string(),
            };
            let _ = writeln!(
                w,
                "| `{prefix}/{}` | {status} | {} | {} |",
                a.name, a.summary, a.weir
            );
        }
    }
    let _ = write!(
        w,
        "\n---\n\nGenerated by `k8s_sync::annotations::registry::markdown` from \
`k8s-sync/src/annotations/registry.rs`; do not edit. After changing the registry, run\n\
`WEIR_BLESS=1 cargo test -p weir-k8s-sync --test annotations_doc` to rewrite this page.\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_without_duplicates() {
        for pair in ANNOTATIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} must come after {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn lists_every_annotation() {
        assert!(ANNOTATIONS.len() >= 120, "{}", ANNOTATIONS.len());
        for family in Family::ALL {
            assert!(
                ANNOTATIONS.iter().any(|a| a.family == family),
                "{family:?} is empty"
            );
        }
    }

    #[test]
    fn implemented_exactly() {
        let implemented = [
            "ssl-redirect",
            "force-ssl-redirect",
            "preserve-trailing-slash",
            "whitelist-source-range",
            "allowlist-source-range",
            "denylist-source-range",
            "app-root",
            "permanent-redirect",
            "permanent-redirect-code",
            "rewrite-target",
            "temporal-redirect",
            "temporal-redirect-code",
            "upstream-vhost",
            "use-regex",
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
            "x-forwarded-prefix",
            "from-to-www-redirect",
            "server-alias",
            "proxy-body-size",
            "proxy-request-buffering",
            "client-body-buffer-size",
            "proxy-connect-timeout",
            "proxy-read-timeout",
            "proxy-send-timeout",
            "proxy-next-upstream",
            "proxy-next-upstream-tries",
            "proxy-next-upstream-timeout",
            "enable-cors",
            "cors-allow-origin",
            "cors-allow-methods",
            "cors-allow-headers",
            "cors-allow-credentials",
            "cors-expose-headers",
            "cors-max-age",
            "custom-headers",
            "custom-http-errors",
            "default-backend",
            "disable-proxy-intercept-errors",
            "enable-access-log",
            "auth-type",
            "auth-secret",
            "auth-secret-type",
            "auth-realm",
            "satisfy",
            "canary",
            "canary-by-cookie",
            "canary-by-header",
            "canary-by-header-pattern",
            "canary-by-header-value",
            "canary-weight",
            "canary-weight-total",
            "limit-allowlist",
            "limit-burst-multiplier",
            "limit-connections",
            "limit-rate",
            "limit-rate-after",
            "limit-rpm",
            "limit-rps",
            "limit-whitelist",
        ];
        for name in implemented {
            assert_eq!(lookup(name).unwrap().status, Status::Implemented, "{name}");
        }
        for a in ANNOTATIONS {
            assert_eq!(
                a.status == Status::Implemented,
                implemented.contains(&a.name),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn lookup_finds_and_misses() {
        for a in ANNOTATIONS {
            assert_eq!(lookup(a.name), Some(a));
        }
        let rt = lookup("rewrite-target").unwrap();
        assert_eq!(
            (rt.family, rt.status),
            (Family::Rewrite, Status::Implemented)
        );
        for missing in [
            "",
            "nginx.ingress.kubernetes.io/rewrite-target",
            "Rewrite-Target",
            "rewrite-targe",
            "zzz",
            "aaa",
        ] {
            assert_eq!(lookup(missing), None, "{missing:?}");
        }
    }

    #[test]
    fn snippets_refused() {
        for a in ANNOTATIONS {
            let is_snippet = a.name.ends_with("-snippet");
            let removed = a.name.starts_with("global-rate-limit");
            assert_eq!(
                a.status == Status::Refused,
                is_snippet || removed,
                "{}",
                a.name
            );
            assert_eq!(a.family == Family::Snippets, is_snippet, "{}", a.name);
            assert!(!is_snippet || !a.fails_closed(), "{}", a.name);
        }
        for name in [
            "configuration-snippet",
            "server-snippet",
            "stream-snippet",
            "auth-snippet",
            "modsecurity-snippet",
        ] {
            assert_eq!(lookup(name).unwrap().status, Status::Refused, "{name}");
        }
    }

    #[test]
    fn access_guards() {
        let others = [
            "satisfy",
            "whitelist-source-range",
            "allowlist-source-range",
            "denylist-source-range",
            "enable-global-auth",
        ];
        for a in ANNOTATIONS {
            let guards = a.name.starts_with("auth-") || others.contains(&a.name);
            assert_eq!(a.guards_access, guards, "{}", a.name);
            if a.fails_closed() {
                assert!(a.weir.contains("503"), "{}", a.name);
            }
        }
        assert!(lookup("auth-keepalive-share-vars").unwrap().fails_closed());
        assert!(!lookup("auth-url").unwrap().fails_closed());
        assert!(lookup("auth-tls-secret").unwrap().fails_closed());
        assert!(!lookup("limit-rps").unwrap().guards_access);
        assert!(!lookup("whitelist-source-range").unwrap().fails_closed());
    }

    #[test]
    fn table_cells_stay_in_their_cell() {
        for a in ANNOTATIONS {
            for text in [a.name, a.summary, a.weir] {
                assert!(!text.contains(['|', '\n']), "{}: {text:?}", a.name);
            }
            assert!(!a.summary.is_empty(), "{}", a.name);
            // Not-yet annotations say nothing more, unless they fail closed; refusals say why.
            if a.status == Status::NotYet && !a.guards_access {
                assert!(a.weir.is_empty(), "{}", a.name);
            }
            if a.status == Status::Refused || a.fails_closed() {
                assert!(!a.weir.is_empty(), "{}", a.name);
            }
        }
    }

    #[test]
    fn markdown_lists_everything_under_the_prefix() {
        let page = markdown("example.com");
        for a in ANNOTATIONS {
            assert!(
                page.contains(&format!("| `example.com/{}` |", a.name)),
                "{}",
                a.name
            );
        }
        assert!(!page.contains("nginx.ingress.kubernetes.io"));
        assert!(page.contains(&format!("{} annotations:", ANNOTATIONS.len())));
        assert_eq!(anchor(Family::BackendTls.title()), "tls-to-the-backend");
    }
}

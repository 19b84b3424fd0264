//! `ssl-redirect`, `force-ssl-redirect`, `preserve-trailing-slash`: the HTTP → HTTPS redirect.

use proxy_core::HttpsRedirect;

use super::boolean;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "force-ssl-redirect",
    "preserve-trailing-slash",
    "ssl-redirect",
];

/// An Ingress's redirect settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    /// `ssl-redirect` (default: the ConfigMap's `ssl-redirect`): redirect hosts that have TLS.
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: redirect even without TLS on the Ingress.
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash`: keep a trailing `/` in the redirect.
    pub preserve_trailing_slash: bool,
}

impl Redirects {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        let b = boolean(value)?;
        match name {
            "ssl-redirect" => self.ssl_redirect = Some(b),
            "force-ssl-redirect" => self.force_ssl_redirect = b,
            _ => self.preserve_trailing_slash = b,
        }
        Ok(())
    }

    /// Whether plain-HTTP requests for a host are redirected: always with `force-ssl-redirect`,
    /// else when the host has TLS and `ssl-redirect` (or the ConfigMap default) says so.
    pub fn redirects(&self, tls_host: bool, default_ssl_redirect: bool) -> bool {
        self.force_ssl_redirect || (tls_host && self.ssl_redirect.unwrap_or(default_ssl_redirect))
    }

    /// The redirect of a host's routes, if it redirects (see [`Redirects::redirects`]).
    pub fn policy(&self, tls_host: bool, default_ssl_redirect: bool) -> Option<HttpsRedirect> {
        self.redirects(tls_host, default_ssl_redirect)
            .then_some(HttpsRedirect {
                preserve_trailing_slash: self.preserve_trailing_slash,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_booleans_and_decides() {
        let mut r = Redirects::default();
        assert!(r.parse("ssl-redirect", "false").is_ok());
        assert!(!r.redirects(true, true));
        assert!(r.parse("force-ssl-redirect", " true ").is_ok());
        assert!(r.redirects(false, false));
        assert!(r.parse("preserve-trailing-slash", "yes").is_err());
        assert!(!r.preserve_trailing_slash);
        assert!(Redirects::default().redirects(true, true));
        assert!(!Redirects::default().redirects(false, true));
    }
}

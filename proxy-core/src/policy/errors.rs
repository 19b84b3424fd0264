//! Custom error pages (`custom-http-errors`, `default-backend`): responses with a listed status
//! are replaced by the answer of a default backend, as ingress-nginx's `error_page` with its
//! internal `@custom_<backend>_<code>` locations.

use std::hash::{Hash, Hasher};

use crate::model::Target;

/// Where a route's error responses go, and which ones.
#[derive(Debug, Clone)]
pub struct CustomErrors {
    /// The status codes replaced (sorted, no duplicates).
    codes: Vec<u16>,
    /// The default backend asked for the page (the built-in 404 page when it is
    /// [`Target::NotFound`]).
    pub backend: Target,
    /// `false` with `disable-proxy-intercept-errors`: the upstream's own error responses pass
    /// through; only the errors Weir produces (502, 503, 504, ...) are replaced.
    pub intercept_upstream: bool,
    /// The backend comes from the `default-backend` annotation: requests to a route whose
    /// Service has no endpoints go there too (with `X-Code: 503`).
    pub serves_empty_service: bool,
}

impl CustomErrors {
    /// Pages for `codes` from `backend`.
    pub fn new(codes: impl IntoIterator<Item = u16>, backend: Target) -> Self {
        let mut codes: Vec<u16> = codes.into_iter().collect();
        codes.sort_unstable();
        codes.dedup();
        CustomErrors {
            codes,
            backend,
            intercept_upstream: true,
            serves_empty_service: false,
        }
    }

    /// The codes replaced.
    pub fn codes(&self) -> &[u16] {
        &self.codes
    }

    /// Whether a response with `status` (from Weir itself) gets the backend's page.
    pub fn covers(&self, status: u16) -> bool {
        self.codes.binary_search(&status).is_ok()
    }

    /// Whether the upstream's response with `status` is replaced.
    pub fn intercepts(&self, status: u16) -> bool {
        self.intercept_upstream && self.covers(status)
    }
}

fn backend_key(t: &Target) -> Option<&str> {
    match t {
        Target::Pool(p) => Some(&p.key().0),
        Target::NotFound => None,
    }
}

impl PartialEq for CustomErrors {
    fn eq(&self, other: &Self) -> bool {
        self.codes == other.codes
            && self.intercept_upstream == other.intercept_upstream
            && self.serves_empty_service == other.serves_empty_service
            && backend_key(&self.backend) == backend_key(&other.backend)
    }
}

impl Eq for CustomErrors {}

impl Hash for CustomErrors {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The backend's endpoints are hashed with the snapshot's other pools.
        (
            &self.codes,
            self.intercept_upstream,
            self.serves_empty_service,
            backend_key(&self.backend),
        )
            .hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_interception_can_be_off() {
        let mut e = CustomErrors::new([503, 404, 503], Target::NotFound);
        assert_eq!(e.codes(), [404, 503]);
        assert!(e.covers(404) && e.intercepts(503) && !e.covers(500));
        e.intercept_upstream = false;
        assert!(e.covers(503) && !e.intercepts(503));
        assert_ne!(e, CustomErrors::new([404, 503], Target::NotFound));
    }
}

//! `proxy-body-size`, `proxy-request-buffering`, `client-body-buffer-size`: request bodies.

use proxy_core::BodyPolicy;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "client-body-buffer-size",
    "proxy-body-size",
    "proxy-request-buffering",
];

/// An Ingress's body settings; `None`: the ConfigMap's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bodies {
    /// `proxy-body-size` in bytes (`Some(None)`: `0`, unlimited).
    pub max_size: Option<Option<u64>>,
    /// `proxy-request-buffering`: `on` or `off`.
    pub request_buffering: Option<bool>,
    /// `client-body-buffer-size` in bytes.
    pub buffer_size: Option<u64>,
}

impl Bodies {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "proxy-body-size" => self.max_size = Some(max_body_size(value)?),
            "proxy-request-buffering" => self.request_buffering = Some(on_off(value)?),
            _ => self.buffer_size = Some(size(value)?),
        }
        Ok(())
    }

    /// `defaults` (the ConfigMap's) with this Ingress's settings applied.
    pub fn apply(&self, defaults: &BodyPolicy) -> BodyPolicy {
        BodyPolicy {
            max_size: self.max_size.unwrap_or(defaults.max_size),
            request_buffering: self.request_buffering.unwrap_or(defaults.request_buffering),
            buffer_size: self.buffer_size.unwrap_or(defaults.buffer_size),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Bodies::default()
    }
}

/// An nginx size: bytes, or a number with `k`, `m` or `g` (either case), as
/// `client_max_body_size 8m`.
pub(crate) fn size(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !digits.starts_with('+'))
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("expected a size such as 8k, 1m or 1g, got {value:?}"))
}

/// `proxy-body-size`: a size, `0` for unlimited.
pub(crate) fn max_body_size(value: &str) -> Result<Option<u64>, String> {
    size(value).map(|n| (n > 0).then_some(n))
}

/// nginx's `on` / `off`.
pub(crate) fn on_off(value: &str) -> Result<bool, String> {
    match value.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected \"on\" or \"off\", got {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_nginx_reads_them() {
        assert_eq!(size("1m"), Ok(1 << 20));
        assert_eq!(size("8K"), Ok(8192));
        assert_eq!(size(" 2g "), Ok(2 << 30));
        assert_eq!(size("100"), Ok(100));
        for bad in [
            "",
            "m",
            "1.5m",
            "-1",
            "+1",
            "1t",
            "10 m",
            "1mb",
            "99999999999999999g",
        ] {
            let e = size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(max_body_size("0"), Ok(None));
        assert_eq!(max_body_size("0m"), Ok(None));
    }

    #[test]
    fn parses_and_applies_over_the_defaults() {
        let mut b = Bodies::default();
        assert!(b.is_empty());
        b.parse("proxy-body-size", "8k").unwrap();
        b.parse("proxy-request-buffering", "off").unwrap();
        assert!(b.parse("proxy-request-buffering", "true").is_err());
        assert!(b.parse("client-body-buffer-size", "lots").is_err());
        let p = b.apply(&BodyPolicy::default());
        assert_eq!(p.max_size, Some(8192));
        assert!(!p.request_buffering);
        assert_eq!(p.buffer_size, BodyPolicy::default().buffer_size);
        b.parse("proxy-body-size", "0").unwrap();
        b.parse("client-body-buffer-size", "16k").unwrap();
        let p = b.apply(&BodyPolicy::default());
        assert_eq!((p.max_size, p.buffer_size), (None, 16384));
    }
}

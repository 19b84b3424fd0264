//! The ConfigMap keys of the connection limits ([`ConnLimits`]), with ingress-nginx's syntax:
//! seconds as a number (optionally with `s`), sizes as a number with an optional `k` or `m`.

use std::time::Duration;

use proxy_core::ConnLimits;

/// The keys read here.
pub(crate) const KEYS: &[&str] = &[
    "keep-alive",
    "keep-alive-requests",
    "client-header-timeout",
    "client-body-timeout",
    "send-timeout",
    "client-header-buffer-size",
    "large-client-header-buffers",
    "max-worker-connections",
];

/// Seconds from 0 (when `zero` is allowed) to one hour.
fn seconds(v: &str, zero: bool) -> Result<u64, String> {
    let t = v.trim();
    let n = t.strip_suffix('s').unwrap_or(t);
    match n.parse::<u64>() {
        Ok(s) if (zero || s > 0) && s <= 3600 => Ok(s),
        _ => Err(format!(
            "expected a number of seconds between {} and 3600, got {v:?}",
            u8::from(!zero)
        )),
    }
}

/// A size as nginx writes it: `512`, `8k`, `1m`; from 1 byte to 1 MiB.
fn size(v: &str) -> Result<usize, String> {
    let t = v.trim();
    let (n, unit) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1024),
        Some((i, 'm' | 'M')) => (&t[..i], 1024 * 1024),
        _ => (t, 1),
    };
    match n.parse::<usize>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(b) if b > 0 && b <= 1024 * 1024 => Ok(b),
        _ => Err(format!(
            "expected a size such as \"1k\" or \"8k\" (at most 1m), got {v:?}"
        )),
    }
}

/// Apply `key` (one of [`KEYS`]); a bad value leaves the default and says why.
pub(crate) fn apply(key: &str, value: &str, limits: &mut ConnLimits) -> Result<(), String> {
    match key {
        "keep-alive" => {
            let s = seconds(value, true)?;
            limits.keep_alive = (s > 0).then(|| Duration::from_secs(s));
        }
        "keep-alive-requests" => match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 => limits.keep_alive_requests = n,
            _ => {
                return Err(format!(
                    "expected a whole number of requests, at least 1, got {value:?}"
                ))
            }
        },
        "client-header-timeout" => {
            limits.client_header_timeout = Duration::from_secs(seconds(value, false)?);
        }
        "client-body-timeout" => {
            limits.client_body_timeout = Duration::from_secs(seconds(value, false)?);
        }
        "send-timeout" => {
            limits.send_timeout = Duration::from_secs(seconds(value, false)?);
        }
        "client-header-buffer-size" => limits.client_header_buffer_size = size(value)?,
        "large-client-header-buffers" => {
            let words: Vec<&str> = value.split_whitespace().collect();
            let [number, each] = words[..] else {
                return Err(format!(
                    "expected a number and a size such as \"4 8k\", got {value:?}"
                ));
            };
            let number = match number.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "expected a number of buffers from 1 to 64 and a size such as \"4 8k\", got {value:?}"
                    ))
                }
            };
            let each = size(each).map_err(|e| format!("{e} in {value:?}"))?;
            limits.large_header_buffers = number;
            limits.large_header_buffer_size = each;
        }
        "max-worker-connections" => match value.trim().parse::<usize>() {
            Ok(n) => limits.max_connections = n,
            Err(_) => {
                return Err(format!(
                    "expected a whole number of connections (0: limited by open files only), got {value:?}"
                ))
            }
        },
        _ => return Err("not a connection limit".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (ConnLimits, Vec<String>) {
        let mut l = ConnLimits::default();
        let errors = pairs
            .iter()
            .filter_map(|(k, v)| apply(k, v, &mut l).err().map(|e| format!("{k}: {e}")))
            .collect();
        (l, errors)
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let l = ConnLimits::default();
        assert_eq!(l.keep_alive, Some(Duration::from_secs(75)));
        assert_eq!(l.keep_alive_requests, 1000);
        assert_eq!(l.client_header_timeout, Duration::from_secs(60));
        assert_eq!(l.client_body_timeout, Duration::from_secs(60));
        assert_eq!(l.send_timeout, Duration::from_secs(60));
        assert_eq!(l.client_header_buffer_size, 1024);
        assert_eq!(
            (l.large_header_buffers, l.large_header_buffer_size),
            (4, 8192)
        );
        assert_eq!(l.max_connections, 16384);
    }

    #[test]
    fn values_are_read() {
        let (l, e) = read(&[
            ("keep-alive", "2"),
            ("keep-alive-requests", "10"),
            ("client-header-timeout", "3s"),
            ("client-body-timeout", "4"),
            ("send-timeout", "5s"),
            ("client-header-buffer-size", "2k"),
            ("large-client-header-buffers", "8 16k"),
            ("max-worker-connections", "50"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(l.keep_alive, Some(Duration::from_secs(2)));
        assert_eq!(l.keep_alive_requests, 10);
        assert_eq!(l.client_header_timeout, Duration::from_secs(3));
        assert_eq!(l.client_body_timeout, Duration::from_secs(4));
        assert_eq!(l.send_timeout, Duration::from_secs(5));
        assert_eq!(l.client_header_buffer_size, 2048);
        assert_eq!(
            (l.large_header_buffers, l.large_header_buffer_size),
            (8, 16384)
        );
        assert_eq!(l.max_connections, 50);
        let (l, e) = read(&[("keep-alive", "0"), ("max-worker-connections", "0")]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(l.keep_alive, None, "0 turns keep-alive off");
        assert_eq!(l.max_connections, 0);
    }

    #[test]
    fn malformed_values_keep_the_default_and_name_key_and_value() {
        let bad = [
            ("keep-alive", "forever"),
            ("keep-alive", "-1"),
            ("keep-alive-requests", "0"),
            ("client-header-timeout", "0"),
            ("client-body-timeout", "1h"),
            ("send-timeout", "0"),
            ("send-timeout", "soon"),
            ("client-header-buffer-size", "2g"),
            ("client-header-buffer-size", "0k"),
            ("large-client-header-buffers", "4"),
            ("large-client-header-buffers", "0 8k"),
            ("large-client-header-buffers", "4 8x"),
            ("max-worker-connections", "many"),
        ];
        for (k, v) in bad {
            let (l, e) = read(&[(k, v)]);
            assert_eq!(l, ConnLimits::default(), "{k}: {v}");
            assert_eq!(e.len(), 1, "{k}: {v}");
            assert!(
                e[0].starts_with(k) && e[0].contains(&format!("{v:?}")),
                "{}",
                e[0]
            );
        }
    }
}

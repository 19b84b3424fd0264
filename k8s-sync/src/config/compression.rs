//! ConfigMap keys of response compression: `use-gzip`, `gzip-level`, `gzip-min-length`,
//! `gzip-types`, `enable-brotli`, `brotli-level`, `brotli-min-length`, `brotli-types`, with
//! ingress-nginx's defaults. A bad value keeps that key's default.

use proxy_core::{Compression, Encoding};

/// The keys read here.
pub(super) const KEYS: &[&str] = &[
    "brotli-level",
    "brotli-min-length",
    "brotli-types",
    "enable-brotli",
    "gzip-level",
    "gzip-min-length",
    "gzip-types",
    "use-gzip",
];

/// The compression keys of one ConfigMap, before they are combined.
pub(super) struct CompressionKeys {
    use_gzip: bool,
    gzip: Encoding,
    enable_brotli: bool,
    brotli: Encoding,
}

impl Default for CompressionKeys {
    fn default() -> Self {
        CompressionKeys {
            use_gzip: false,
            gzip: Encoding {
                level: 1,
                min_length: 256,
                types: types(Compression::DEFAULT_TYPES),
            },
            enable_brotli: false,
            brotli: Encoding {
                level: 4,
                min_length: 20,
                types: types(Compression::DEFAULT_TYPES),
            },
        }
    }
}

/// A space-separated list of media types; `text/html` is always compressed, as nginx does.
fn types(v: &str) -> Vec<String> {
    let mut out: Vec<String> = v.split_whitespace().map(str::to_ascii_lowercase).collect();
    if !out.iter().any(|t| t == "text/html" || t == "*") {
        out.push("text/html".into());
    }
    out
}

fn media_types(v: &str) -> Result<Vec<String>, String> {
    let ok = !v.trim().is_empty()
        && v.split_whitespace().all(|t| {
            t == "*"
                || t.split_once('/').is_some_and(|(a, b)| {
                    let token = |s: &str| {
                        !s.is_empty()
                            && s.bytes()
                                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&c))
                    };
                    token(a) && token(b)
                })
        });
    if ok {
        Ok(types(v))
    } else {
        Err(format!(
            "expected space-separated media types (type/subtype), got {v:?}"
        ))
    }
}

fn level(v: &str, max: u32) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a level from 1 to {max}, got {v:?}")),
    }
}

fn length(v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("expected a number of bytes, got {v:?}"))
}

impl CompressionKeys {
    /// Take one key of [`KEYS`].
    pub(super) fn parse(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "use-gzip" => self.use_gzip = super::boolean(value)?,
            "enable-brotli" => self.enable_brotli = super::boolean(value)?,
            "gzip-level" => self.gzip.level = level(value, 9)?,
            "brotli-level" => self.brotli.level = level(value, 11)?,
            "gzip-min-length" => self.gzip.min_length = length(value)?,
            "brotli-min-length" => self.brotli.min_length = length(value)?,
            "gzip-types" => self.gzip.types = media_types(value)?,
            _ => self.brotli.types = media_types(value)?,
        }
        Ok(())
    }

    /// The server's compression.
    pub(super) fn finish(self) -> Compression {
        Compression {
            gzip: self.use_gzip.then_some(self.gzip),
            brotli: self.enable_brotli.then_some(self.brotli),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_values_and_malformed_values() {
        assert_eq!(CompressionKeys::default().finish(), Compression::default());
        let mut k = CompressionKeys::default();
        k.parse("use-gzip", "true").unwrap();
        let c = k.finish();
        let gzip = c.gzip.unwrap();
        assert_eq!((gzip.level, gzip.min_length), (1, 256));
        assert!(gzip.types.iter().any(|t| t == "application/json"));
        assert!(gzip.types.iter().any(|t| t == "text/html"));
        assert_eq!(c.brotli, None);

        let mut k = CompressionKeys::default();
        for (key, value) in [
            ("use-gzip", "true"),
            ("enable-brotli", "true"),
            ("gzip-level", "6"),
            ("brotli-level", "11"),
            ("gzip-min-length", "0"),
            ("brotli-min-length", "1000"),
            ("gzip-types", "text/csv Application/JSON"),
            ("brotli-types", "*"),
        ] {
            k.parse(key, value).unwrap();
        }
        let c = k.finish();
        let (gzip, brotli) = (c.gzip.unwrap(), c.brotli.unwrap());
        assert_eq!((gzip.level, gzip.min_length), (6, 0));
        assert_eq!(gzip.types, ["text/csv", "application/json", "text/html"]);
        assert_eq!((brotli.level, brotli.min_length), (11, 1000));
        assert_eq!(brotli.types, ["*"]);

        let mut k = CompressionKeys::default();
        for (key, value) in [
            ("use-gzip", "yes"),
            ("gzip-level", "10"),
            ("brotli-level", "0"),
            ("gzip-min-length", "-1"),
            ("gzip-types", "text"),
            ("brotli-types", ""),
        ] {
            let err = k.parse(key, value).unwrap_err();
            assert!(err.contains(&format!("{value:?}")), "{key}: {err}");
        }
        let defaults = CompressionKeys::default();
        assert_eq!(k.gzip, defaults.gzip);
        assert_eq!(k.brotli, defaults.brotli);
        assert!(!k.use_gzip);
    }
}

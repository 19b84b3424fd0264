//! `auth-type`, `auth-secret`, `auth-secret-type`, `auth-realm` (basic authentication) and
//! `satisfy`. The annotations are read here; the Secret is read at every build
//! ([`BasicAuthSettings::resolve`], from [`crate::translate`]), so a change to it applies
//! without touching the Ingress.

use std::sync::Arc;

use proxy_core::{BasicAuth, PasswordHash};

use crate::objects::ObjectSet;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "auth-realm",
    "auth-secret",
    "auth-secret-type",
    "auth-type",
    "satisfy",
];

/// How the Secret holds the users (`auth-secret-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecretType {
    /// `auth-file` (default): an htpasswd file in the key `auth`.
    #[default]
    File,
    /// `auth-map`: one key per user, its value the hash.
    Map,
}

/// An Ingress's authentication annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasicAuthSettings {
    /// `auth-type: basic` was given (the only type Weir has; `digest` is refused).
    pub basic: bool,
    /// `auth-secret`: `namespace/name` or `name`, as written.
    pub secret: Option<String>,
    /// `auth-secret-type`.
    pub secret_type: SecretType,
    /// `auth-realm` (default empty).
    pub realm: String,
    /// `satisfy: any`.
    pub satisfy_any: bool,
}

/// ingress-nginx's check of object names: letters, digits, `-`, `.`, `_`, at most one `/`.
fn valid_ref(v: &str) -> bool {
    !v.is_empty()
        && v.matches('/').count() <= 1
        && v.split('/').all(|p| !p.is_empty())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
}

impl BasicAuthSettings {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        match name {
            "auth-type" => match v {
                "basic" => self.basic = true,
                "digest" => {
                    return Err(
                        "digest authentication is not supported by Weir (use basic)".to_string()
                    )
                }
                _ => return Err(format!("expected \"basic\" or \"digest\", got {value:?}")),
            },
            "auth-secret" => {
                if !valid_ref(v) {
                    return Err(format!(
                        "expected a Secret as name or namespace/name, got {value:?}"
                    ));
                }
                self.secret = Some(v.to_string());
            }
            "auth-secret-type" => {
                self.secret_type = match v {
                    "auth-file" => SecretType::File,
                    "auth-map" => SecretType::Map,
                    _ => {
                        return Err(format!(
                            "expected \"auth-file\" or \"auth-map\", got {value:?}"
                        ))
                    }
                }
            }
            "auth-realm" => {
                // ingress-nginx's check: letters, digits, space and `-._~/:`.
                if !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" -._~/:".contains(&b))
                {
                    return Err(format!(
                        "expected letters, digits, spaces and -._~/: only, got {value:?}"
                    ));
                }
                self.realm = value.to_string();
            }
            "satisfy" => {
                self.satisfy_any = match v {
                    "any" => true,
                    "all" => false,
                    _ => return Err(format!("expected \"any\" or \"all\", got {value:?}")),
                }
            }
            _ => return Err("not parsed by Weir".to_string()),
        }
        Ok(())
    }

    /// The users from the Secret, for an Ingress in `namespace`. `Ok(None)`: no basic
    /// authentication. `Err`: the Ingress must not be served (a missing or unusable Secret, as
    /// ingress-nginx). Lines that cannot be used go to `warnings`; those users never get in.
    pub fn resolve(
        &self,
        namespace: &str,
        objects: &ObjectSet,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Arc<BasicAuth>>, String> {
        if !self.basic {
            if self.secret.is_some() {
                warnings.push("auth-secret has no effect without auth-type: basic".to_string());
            }
            return Ok(None);
        }
        let Some(secret) = &self.secret else {
            return Err("auth-type: basic needs auth-secret".to_string());
        };
        let key = match secret.split_once('/') {
            Some((ns, _)) if ns != namespace => {
                return Err(format!(
                    "auth-secret: Secret {secret} is in another namespace than the Ingress (not allowed, as ingress-nginx's default allow-cross-namespace-resources: false)"
                ))
            }
            Some(_) => secret.clone(),
            None => format!("{namespace}/{secret}"),
        };
        let obj = objects
            .secrets
            .get(&key)
            .ok_or_else(|| format!("auth-secret: Secret {key} not found"))?;
        let data = obj.data.as_ref();
        let users = match self.secret_type {
            SecretType::File => {
                let file = data
                    .and_then(|d| d.get("auth"))
                    .ok_or_else(|| format!("auth-secret: Secret {key} has no key \"auth\""))?;
                let text = std::str::from_utf8(&file.0).map_err(|_| {
                    format!("auth-secret: key \"auth\" of Secret {key} is not text")
                })?;
                let (users, problems) = BasicAuth::parse_htpasswd(text);
                warnings.extend(problems.into_iter().map(|p| {
                    format!("auth-secret: Secret {key}, key \"auth\", {p}; that user cannot log in")
                }));
                users
            }
            SecretType::Map => {
                let mut users = Vec::new();
                for (user, hash) in data.into_iter().flatten() {
                    let parsed = std::str::from_utf8(&hash.0)
                        .map_err(|_| "not text".to_string())
                        .and_then(|h| PasswordHash::parse(h.trim_end()));
                    match parsed {
                        Ok(h) => users.push((user.clone(), h)),
                        Err(e) => warnings.push(format!(
                            "auth-secret: Secret {key}, user {user:?}: {e}; that user cannot log in"
                        )),
                    }
                }
                users
            }
        };
        BasicAuth::new(&self.realm, users)
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| format!("auth-realm: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Object;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;

    #[test]
    fn parses_values_and_refuses_bad_ones() {
        let mut a = BasicAuthSettings::default();
        a.parse("auth-type", " basic ").unwrap();
        a.parse("auth-secret", "ns/users").unwrap();
        a.parse("auth-secret-type", "auth-map").unwrap();
        a.parse("auth-realm", "Staff only: v1.2").unwrap();
        a.parse("satisfy", "any").unwrap();
        assert!(a.basic && a.satisfy_any);
        assert_eq!(a.secret.as_deref(), Some("ns/users"));
        assert_eq!(
            (a.secret_type, a.realm.as_str()),
            (SecretType::Map, "Staff only: v1.2")
        );
        a.parse("satisfy", "all").unwrap();
        assert!(!a.satisfy_any);
        for (name, bad) in [
            ("auth-type", "digest"),
            ("auth-type", "Basic"),
            ("auth-type", ""),
            ("auth-secret", ""),
            ("auth-secret", "a/b/c"),
            ("auth-secret", "ns/"),
            ("auth-secret", "bad name"),
            ("auth-secret-type", "htpasswd"),
            ("auth-realm", "say \"hi\""),
            ("auth-realm", "tab\there"),
            ("satisfy", "some"),
        ] {
            let err = a.parse(name, bad).unwrap_err();
            assert!(
                err.contains(&format!("{bad:?}")) || err.contains("digest"),
                "{name}: {err}"
            );
        }
        assert!(a
            .parse("auth-type", "digest")
            .unwrap_err()
            .contains("not supported"));
    }

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> ObjectSet {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        let mut set = ObjectSet::default();
        set.insert(Object::Secret(Arc::new(s)));
        set
    }

    #[test]
    fn resolves_the_secret() {
        let objects = secret(
            "ns",
            "users",
            &[
                ("auth", "alice:{PLAIN}a\nbob:nonsense\n"),
                ("carol", "{PLAIN}c"),
            ],
        );
        let mut settings = BasicAuthSettings {
            basic: true,
            secret: Some("users".into()),
            ..Default::default()
        };
        let mut w = Vec::new();
        let auth = settings.resolve("ns", &objects, &mut w).unwrap().unwrap();
        assert_eq!(auth.users(), 1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("bob"), "{w:?}");
        settings.secret_type = SecretType::Map;
        w.clear();
        let map = settings.resolve("ns", &objects, &mut w).unwrap().unwrap();
        // `auth` is a user too in a map (its value is no hash: reported).
        assert_eq!((map.users(), w.len()), (1, 1), "{w:?}");
        settings.secret_type = SecretType::File;
        let err =
            |s: &BasicAuthSettings, ns: &str| s.resolve(ns, &objects, &mut Vec::new()).unwrap_err();
        assert!(err(&settings, "other").contains("other/users not found"));
        settings.secret = Some("ns/users".into());
        assert!(settings.resolve("ns", &objects, &mut w).is_ok());
        assert!(err(&settings, "other").contains("another namespace"));
        settings.secret = None;
        assert!(err(&settings, "ns").contains("needs auth-secret"));
        let no_key = secret("ns", "users", &[("users", "x")]);
        let s = BasicAuthSettings {
            basic: true,
            secret: Some("users".into()),
            ..Default::default()
        };
        assert!(s
            .resolve("ns", &no_key, &mut w)
            .unwrap_err()
            .contains("no key \"auth\""));
        // Without auth-type nothing is enforced, as ingress-nginx (reported).
        let off = BasicAuthSettings {
            secret: Some("users".into()),
            ..Default::default()
        };
        w.clear();
        assert_eq!(off.resolve("ns", &objects, &mut w), Ok(None));
        assert_eq!(w.len(), 1);
    }
}

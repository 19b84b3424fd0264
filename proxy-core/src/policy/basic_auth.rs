//! Auth phase: HTTP basic authentication against htpasswd hashes (`auth-type: basic`).
//!
//! The users and their hashes are parsed once, when the route is built. A request's
//! `Authorization` header is checked against them; a success is remembered in a small bounded
//! cache of the route's own (the exact header bytes, compared in full), so a client sending the
//! same credentials again does not pay for bcrypt again. Slow hashes (bcrypt, SHA-crypt, MD5-crypt)
//! are verified on Tokio's blocking pool, off the proxy's worker threads.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use base64::Engine as _;
use http::{HeaderValue, StatusCode};
use pingora::http::RequestHeader;
use sha2::Digest as _;

use super::LocalResponse;

/// Successful verifications remembered at most per route's user list; the cache is emptied
/// when it is full.
pub const VERIFIED_CACHE_SIZE: usize = 4096;

/// `Authorization` values longer than this are verified every time, not remembered (bounds the
/// cache's memory: at most 4096 × 256 bytes per user list).
const CACHED_VALUE_MAX: usize = 256;

/// One user's password hash, in a format `htpasswd` (or `openssl passwd`) writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `{SHA}` + base64 of the SHA-1 of the password (`htpasswd -s`).
    Sha1([u8; 20]),
    /// `{SSHA}` + base64 of SHA-1(password + salt) followed by the salt.
    SaltedSha1(Vec<u8>),
    /// `{PLAIN}` + the password itself.
    Plain(String),
    /// `$apr1$salt$hash`: Apache's MD5 (`htpasswd -m`, the default).
    Apr1 {
        /// The salt (at most 8 characters).
        salt: String,
        /// The whole hash, as in the file.
        full: String,
    },
    /// A `crypt(3)` hash: bcrypt (`$2y$`, `htpasswd -B`), MD5-crypt (`$1$`), SHA-crypt (`$5$`,
    /// `$6$`) or traditional DES (13 characters, `htpasswd -d`).
    Crypt(String),
}

impl PasswordHash {
    /// Reads a hash as written in an htpasswd file.
    pub fn parse(hash: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unsupported or malformed password hash {:?}",
                abbreviate(hash)
            )
        };
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?;
            return bytes.try_into().map(PasswordHash::Sha1).map_err(|_| bad());
        }
        if let Some(b64) = hash.strip_prefix("{SSHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?;
            return if bytes.len() > 20 {
                Ok(PasswordHash::SaltedSha1(bytes))
            } else {
                Err(bad())
            };
        }
        if let Some(plain) = hash.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(plain.to_string()));
        }
        let crypt64 = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        };
        if let Some(rest) = hash.strip_prefix("$apr1$") {
            let (salt, sum) = rest.split_once('$').ok_or_else(bad)?;
            if salt.is_empty() || salt.len() > 8 || sum.len() != 22 || !crypt64(sum) {
                return Err(bad());
            }
            return Ok(PasswordHash::Apr1 {
                salt: salt.to_string(),
                full: hash.to_string(),
            });
        }
        if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            // `$2y$10$` + 22 characters of salt + 31 of hash.
            return if hash.len() == 60 && crypt64(&hash[7..]) {
                Ok(PasswordHash::Crypt(hash.to_string()))
            } else {
                Err(bad())
            };
        }
        let known = ["$1$", "$5$", "$6$"];
        if known.iter().any(|p| hash.starts_with(p)) && hash.len() > 8 {
            return Ok(PasswordHash::Crypt(hash.to_string()));
        }
        if hash.len() == 13 && crypt64(hash) {
            return Ok(PasswordHash::Crypt(hash.to_string()));
        }
        Err(bad())
    }

    /// Whether checking a password costs enough to leave the async worker for it.
    fn slow(&self) -> bool {
        matches!(self, PasswordHash::Crypt(h) if h.starts_with('$'))
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Sha1(sum) => constant_eq(&sha1::Sha1::digest(password.as_bytes()), sum),
            PasswordHash::SaltedSha1(bytes) => {
                let (sum, salt) = bytes.split_at(20);
                let mut h = sha1::Sha1::new();
                h.update(password.as_bytes());
                h.update(salt);
                constant_eq(&h.finalize(), sum)
            }
            PasswordHash::Plain(p) => constant_eq(p.as_bytes(), password.as_bytes()),
            PasswordHash::Apr1 { salt, full } => constant_eq(
                apr1(password.as_bytes(), salt.as_bytes()).as_bytes(),
                full.as_bytes(),
            ),
            PasswordHash::Crypt(h) => pwhash::unix::verify(password, h),
        }
    }
}

/// The first characters of a hash, for messages.
fn abbreviate(s: &str) -> String {
    let cut: String = s.chars().take(8).collect();
    if cut.len() < s.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Apache's MD5 crypt (`$apr1$`): the FreeBSD MD5-crypt with its own magic.
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let mut ctx = md5::Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let alt = md5::Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    for chunk in password.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = md5::Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(sum[a]) << 16) | (u32::from(sum[b]) << 8) | u32::from(sum[c]),
            4,
        );
    }
    put(u32::from(sum[11]), 2);
    out
}

/// Basic authentication of a route: its users and the realm of the `WWW-Authenticate`
/// challenge. Compared and hashed by realm and users.
#[derive(Debug)]
pub struct BasicAuth {
    realm: String,
    challenge: HeaderValue,
    users: HashMap<String, PasswordHash>,
    fingerprint: [u8; 32],
    /// `Authorization` values that passed (read-mostly: readers do not block each other).
    verified: RwLock<HashSet<Box<[u8]>>>,
}

impl PartialEq for BasicAuth {
    fn eq(&self, other: &Self) -> bool {
        self.realm == other.realm && self.fingerprint == other.fingerprint
    }
}

impl Eq for BasicAuth {}

impl std::hash::Hash for BasicAuth {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.realm.hash(state);
        self.fingerprint.hash(state);
    }
}

/// A realm that cannot go into a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("realm {0:?} cannot be sent in a WWW-Authenticate header")]
pub struct InvalidRealm(pub String);

impl BasicAuth {
    /// Users and hashes (the first entry of a user wins, as nginx reads its file).
    pub fn new(
        realm: &str,
        users: impl IntoIterator<Item = (String, PasswordHash)>,
    ) -> Result<Self, InvalidRealm> {
        if realm.contains(['"', '\\']) {
            return Err(InvalidRealm(realm.to_string()));
        }
        let challenge = HeaderValue::try_from(format!("Basic realm=\"{realm}\""))
            .map_err(|_| InvalidRealm(realm.to_string()))?;
        let mut map = HashMap::new();
        for (user, hash) in users {
            map.entry(user).or_insert(hash);
        }
        let mut sorted: Vec<_> = map.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut fp = sha2::Sha256::new();
        for (user, hash) in sorted {
            fp.update(user.as_bytes());
            fp.update([0]);
            fp.update(format!("{hash:?}").as_bytes());
            fp.update([0]);
        }
        Ok(BasicAuth {
            realm: realm.to_string(),
            challenge,
            users: map,
            fingerprint: fp.finalize().into(),
            verified: RwLock::default(),
        })
    }

    /// Reads an htpasswd file: `user:hash` per line; empty lines and `#` comments are skipped.
    /// Lines that cannot be used are returned as problems (those users never authenticate).
    pub fn parse_htpasswd(text: &str) -> (Vec<(String, PasswordHash)>, Vec<String>) {
        let mut users = Vec::new();
        let mut problems = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, rest)) = line.split_once(':') else {
                problems.push(format!("line {}: no ':' between user and hash", n + 1));
                continue;
            };
            // As nginx: the hash ends at the next ':' (htpasswd comments may follow).
            let hash = rest.split(':').next().unwrap_or_default();
            match PasswordHash::parse(hash) {
                Ok(h) => users.push((user.to_string(), h)),
                Err(e) => problems.push(format!("line {} (user {user:?}): {e}", n + 1)),
            }
        }
        (users, problems)
    }

    /// The realm of the challenge.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many users may authenticate.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The 401 answer: nginx's page and the `WWW-Authenticate` challenge.
    fn challenge(&self) -> LocalResponse {
        LocalResponse::page(StatusCode::UNAUTHORIZED)
            .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone())
    }

    /// The auth phase: `None` when the request carries a valid user and password, else the
    /// answer (401 with the challenge).
    pub async fn check(&self, req: &RequestHeader) -> Option<LocalResponse> {
        let Some(value) = req.headers.get(http::header::AUTHORIZATION) else {
            return Some(self.challenge());
        };
        let value = value.as_bytes();
        if self.verified.read().is_ok_and(|c| c.contains(value)) {
            return None;
        }
        let Some((user, password)) = credentials(value) else {
            return Some(self.challenge());
        };
        let Some(hash) = self.users.get(&user) else {
            return Some(self.challenge());
        };
        let ok = if hash.slow() {
            // At most one slow check per core at a time: a flood of wrong passwords queues here
            // instead of filling the blocking pool with bcrypt runs.
            let Ok(_permit) = slow_checks().acquire().await else {
                return Some(self.challenge());
            };
            let hash = hash.clone();
            tokio::task::spawn_blocking(move || hash.verify(&password))
                .await
                .unwrap_or(false)
        } else {
            hash.verify(&password)
        };
        if !ok {
            return Some(self.challenge());
        }
        if value.len() <= CACHED_VALUE_MAX {
            if let Ok(mut cache) = self.verified.write() {
                if cache.len() >= VERIFIED_CACHE_SIZE {
                    cache.clear();
                }
                cache.insert(value.into());
            }
        }
        None
    }
}

/// The permits for slow hash checks (bcrypt, SHA-crypt, MD5-crypt): one per core.
fn slow_checks() -> &'static tokio::sync::Semaphore {
    static SLOW: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOW.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// User and password of a `Basic` `Authorization` value.
fn credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_start())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hashes of "s3cret" made by htpasswd and openssl passwd.
    const APR1: &str = "$apr1$6A0fWnbg$SmVQCMLHAFnmiOoDnERH31";
    const SHA: &str = "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=";

    #[test]
    fn apr1_matches_a_known_hash() {
        // openssl passwd -apr1 -salt 6A0fWnbg s3cret
        assert_eq!(apr1(b"s3cret", b"6A0fWnbg"), APR1);
        let h = PasswordHash::parse(APR1).unwrap();
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cret "));
        assert!(!h.verify(""));
    }

    #[test]
    fn sha1_plain_and_crypt_hashes() {
        let sha = PasswordHash::parse(SHA).unwrap();
        assert!(sha.verify("s3cret") && !sha.verify("other"));
        let plain = PasswordHash::parse("{PLAIN}pw").unwrap();
        assert!(plain.verify("pw") && !plain.verify("pW"));
        // htpasswd -nbd, openssl passwd -1 and -5.
        for hash in [
            "ziMVTlFgsvplI",
            "$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/",
            "$5$abcdefgh$OcHWp0Vj4l19dnE2g4tHD4hbItEZgO0bjRV6LjwCLoA",
        ] {
            let h = PasswordHash::parse(hash).unwrap();
            assert!(h.verify("s3cret") && !h.verify("s3creX"), "{hash}");
        }
        let bcrypt = pwhash::bcrypt::hash_with(
            pwhash::bcrypt::BcryptSetup {
                cost: Some(4),
                variant: Some(pwhash::bcrypt::BcryptVariant::V2y),
                ..Default::default()
            },
            "s3cret",
        )
        .unwrap();
        assert!(bcrypt.starts_with("$2y$04$"), "{bcrypt}");
        let b = PasswordHash::parse(&bcrypt).unwrap();
        assert!(b.slow() && b.verify("s3cret") && !b.verify("s3cre"));
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in [
            "",
            "plaintext",
            "{SHA}notbase64!",
            "{SHA}YWJj",
            "{SSHA}YWJj",
            "$apr1$",
            "$apr1$salt",
            "$apr1$toolongsalt$9BtGDu7G8xfvTNj1/JhCp/",
            "$apr1$6A0fWnbg$short",
            "$2y$",
            "$2y$10$tooshort",
            "$2y$10$abcdefghijklmnopqrstuv!bcdefghijklmnopqrstuvwxyz01234",
            "abcdefghijk!m",
        ] {
            let err = PasswordHash::parse(bad).unwrap_err();
            assert!(err.contains("password hash"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn htpasswd_files() {
        let text = format!(
            "# users\n\nalice:{APR1}\nbob:{SHA}:comment\r\nbroken\ncarol:$9$x\nalice:{{PLAIN}}x\n"
        );
        let (users, problems) = BasicAuth::parse_htpasswd(&text);
        let names: Vec<_> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "alice"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 5:"), "{problems:?}");
        assert!(problems[1].contains("carol"), "{problems:?}");
        let auth = BasicAuth::new("r", users).unwrap();
        assert_eq!(auth.users(), 2);
        assert!(auth.users["alice"].verify("s3cret"), "the first entry wins");
    }

    #[test]
    fn realms_and_equality() {
        assert!(BasicAuth::new("a \"quoted\" realm", []).is_err());
        assert!(BasicAuth::new("line\nbreak", []).is_err());
        let a = BasicAuth::new(
            "Staff only",
            [("u".into(), PasswordHash::Plain("p".into()))],
        )
        .unwrap();
        assert_eq!(a.challenge.to_str().unwrap(), "Basic realm=\"Staff only\"");
        let b = BasicAuth::new(
            "Staff only",
            [("u".into(), PasswordHash::Plain("p".into()))],
        )
        .unwrap();
        let c = BasicAuth::new(
            "Staff only",
            [("u".into(), PasswordHash::Plain("q".into()))],
        )
        .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn request(auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(a) = auth {
            r.insert_header("authorization", a).unwrap();
        }
        r
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[tokio::test]
    async fn checks_credentials() {
        let (users, _) = BasicAuth::parse_htpasswd(&format!("alice:{APR1}\n"));
        let auth = BasicAuth::new("", users).unwrap();
        let status = |r: Option<LocalResponse>| r.map(|r| r.status.as_u16());
        assert_eq!(
            status(auth.check(&request(Some(&basic("alice:s3cret")))).await),
            None
        );
        // Cached now: the same header passes again.
        assert_eq!(
            status(auth.check(&request(Some(&basic("alice:s3cret")))).await),
            None
        );
        let lower = basic("alice:s3cret").replacen("Basic", "basic", 1);
        assert_eq!(status(auth.check(&request(Some(&lower))).await), None);
        for bad in [
            basic("alice:wrong"),
            basic("bob:s3cret"),
            basic("alice"),
            "Basic !!!".to_string(),
            "Bearer abc".to_string(),
        ] {
            let answer = auth.check(&request(Some(&bad))).await.expect(&bad);
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            assert_eq!(answer.headers["www-authenticate"], "Basic realm=\"\"");
        }
        assert_eq!(status(auth.check(&request(None)).await), Some(401));
    }

    #[tokio::test]
    async fn satisfy_any_or_all_with_the_lists() {
        use super::super::{on_request, AccessList, RoutePolicy, StepRequest};
        let auth = BasicAuth::new("r", [("u".into(), PasswordHash::Plain("p".into()))]).unwrap();
        let mut policy = RoutePolicy {
            basic_auth: Some(std::sync::Arc::new(auth)),
            access: Some(AccessList {
                allow: vec!["10.0.0.0/8".parse().unwrap()],
                deny: vec!["10.9.0.0/16".parse().unwrap()],
            }),
            ..Default::default()
        };
        let server = crate::model::ServerPolicy::default();
        let good = request(Some(&basic("u:p")));
        let none = request(None);
        let run = |p: &RoutePolicy, header: &RequestHeader, ip: &str| {
            let ip = ip.parse().ok();
            let p = p.clone();
            let header = header.clone();
            let server = server.clone();
            async move {
                let req = StepRequest::new(&header, ip, false, "a.test", "/");
                on_request(&p, &req, &server, &mut None)
                    .await
                    .map(|r| r.status.as_u16())
            }
        };
        // all (default): the lists first, then authentication.
        assert_eq!(run(&policy, &none, "10.1.1.1").await, Some(401));
        assert_eq!(run(&policy, &good, "10.1.1.1").await, None);
        assert_eq!(run(&policy, &good, "192.0.2.1").await, Some(403));
        assert_eq!(run(&policy, &good, "10.9.1.1").await, Some(403));
        policy.satisfy_any = true;
        assert_eq!(
            run(&policy, &none, "10.1.1.1").await,
            None,
            "allowed address"
        );
        assert_eq!(run(&policy, &none, "192.0.2.1").await, Some(401));
        assert_eq!(
            run(&policy, &good, "192.0.2.1").await,
            None,
            "authenticated"
        );
        assert_eq!(
            run(&policy, &none, "10.9.1.1").await,
            Some(401),
            "denied address"
        );
        assert_eq!(run(&policy, &good, "10.9.1.1").await, None);
        assert_eq!(run(&policy, &none, "unknown").await, Some(401));
        // Without authentication, `satisfy` changes nothing.
        policy.basic_auth = None;
        assert_eq!(run(&policy, &none, "192.0.2.1").await, Some(403));
    }
}

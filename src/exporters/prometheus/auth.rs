//! Who may read `/metrics`: the exporter's `auth` setting.
//!
//! - `kubernetes`: the caller's bearer token is checked with a `TokenReview`, then a
//!   `SubjectAccessReview` for `get` on the non-resource URL `/metrics` (what the kubelet and
//!   kube-rbac-proxy do); answers are cached for a short time, in a bounded cache keyed by the
//!   token's SHA-256 (the token itself is not kept).
//! - `basic`: users with bcrypt hashes, as Prometheus' exporter web-config
//!   `basic_auth_users`; a password once verified is remembered (by hash) for `cache_ttl`,
//!   since bcrypt is slow on purpose.
//! - `mtls`: the TLS handshake checked a client certificate against `tls.client_ca_file`.
//! - `none`: anyone; must be chosen explicitly for an address other than loopback.
//!
//! No credentials: 401; not allowed: 403; the API server unreachable: 503, with one log line
//! per change of state; never the data.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use foldhash::HashMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use serde::Deserialize;
use tracing::{info, warn};

use crate::kube_api::AuthType;

/// The exporter's `auth` setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum AuthSettings {
    /// Anyone who reaches the endpoint reads it.
    None,
    Kubernetes(KubernetesAuth),
    Basic(BasicAuth),
    /// Clients must show a certificate `tls.client_ca_file` signed (checked in the handshake).
    Mtls,
}

/// `mode: kubernetes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesAuth {
    /// How to reach the API server: `serviceAccount` (default), `kubeConfig` or `none` (with
    /// `endpoint`).
    pub auth_type: AuthType,
    /// The API server URL, for `auth_type: none`.
    pub endpoint: Option<String>,
    /// How long an allowed caller is remembered. Default: 2m (the kubelet's webhook
    /// authentication cache).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a refused token is remembered. Default: 30s (the kubelet's for denials).
    #[serde(with = "humantime_serde")]
    pub denied_cache_ttl: Duration,
    /// Tokens remembered at most. Default: 1024.
    pub max_cached: usize,
}

impl Default for KubernetesAuth {
    fn default() -> Self {
        KubernetesAuth {
            auth_type: AuthType::ServiceAccount,
            endpoint: None,
            cache_ttl: Duration::from_secs(120),
            denied_cache_ttl: Duration::from_secs(30),
            max_cached: 1024,
        }
    }
}

/// `mode: basic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    /// User name → bcrypt hash (`htpasswd -nBC 10 user`), as `basic_auth_users`.
    pub users: BTreeMap<String, String>,
    /// How long a verified password is remembered. Default: 5m.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for BasicAuth {
    fn default() -> Self {
        BasicAuth {
            users: BTreeMap::new(),
            cache_ttl: Duration::from_secs(300),
        }
    }
}

impl AuthSettings {
    /// Every problem with these settings. `client_ca` says whether `tls.client_ca_file` is set.
    pub fn problems(&self, client_ca: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            AuthSettings::None => {}
            AuthSettings::Mtls if !client_ca => problems.push(
                "auth: mode mtls needs tls::client_ca_file (the CA whose client certificates are accepted)".into(),
            ),
            AuthSettings::Mtls => {}
            AuthSettings::Kubernetes(k) => {
                if k.auth_type == AuthType::None && k.endpoint.is_none() {
                    problems.push("auth::endpoint: required with auth_type: none".into());
                }
                if k.max_cached == 0 {
                    problems.push("auth::max_cached: must be at least 1".into());
                }
            }
            AuthSettings::Basic(b) => {
                if b.users.is_empty() {
                    problems.push("auth::users: mode basic needs at least one user".into());
                }
                for (user, hash) in &b.users {
                    if user.contains(':') {
                        problems.push(format!("auth::users: user name {user:?} contains ':'"));
                    }
                    if hash.parse::<bcrypt::HashParts>().is_err() {
                        problems.push(format!(
                            "auth::users::{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credentials, or credentials that name nobody: 401.
    Unauthenticated,
    /// Someone not allowed: 403.
    Forbidden,
    /// The API server could not say: 503.
    Unavailable,
}

impl Verdict {
    pub fn status(self) -> StatusCode {
        match self {
            Verdict::Allowed => StatusCode::OK,
            Verdict::Unauthenticated => StatusCode::UNAUTHORIZED,
            Verdict::Forbidden => StatusCode::FORBIDDEN,
            Verdict::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Decides requests as the settings say.
pub enum Authorizer {
    Anyone,
    Kubernetes(KubernetesAuthorizer),
    Basic(BasicAuthorizer),
}

impl Authorizer {
    pub async fn from_settings(settings: &AuthSettings) -> Result<Self, String> {
        Ok(match settings {
            // mtls: the handshake already refused clients without an accepted certificate.
            AuthSettings::None | AuthSettings::Mtls => Authorizer::Anyone,
            AuthSettings::Kubernetes(k) => {
                let client = crate::kube_api::client(k.auth_type, k.endpoint.as_deref()).await?;
                Authorizer::Kubernetes(KubernetesAuthorizer::new(client, k))
            }
            AuthSettings::Basic(b) => Authorizer::Basic(BasicAuthorizer {
                users: b.users.clone(),
                ttl: b.cache_ttl,
                verified: Mutex::default(),
            }),
        })
    }

    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        match self {
            Authorizer::Anyone => Verdict::Allowed,
            Authorizer::Kubernetes(k) => match credentials(headers, "Bearer") {
                Some(token) => k.check(token).await,
                None => Verdict::Unauthenticated,
            },
            Authorizer::Basic(b) => b.check(headers),
        }
    }

    /// The `WWW-Authenticate` challenge sent with a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Authorizer::Anyone => None,
            Authorizer::Kubernetes(_) => Some("Bearer realm=\"netshim\""),
            Authorizer::Basic(_) => Some("Basic realm=\"netshim\", charset=\"UTF-8\""),
        }
    }
}

/// The credentials of an `Authorization: <scheme> <credentials>` header.
fn credentials<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

type Digest = [u8; 32];

fn digest(secret: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A bounded map of verdicts that expire.
struct Cache {
    entries: HashMap<Digest, (Verdict, Instant)>,
    max: usize,
}

impl Cache {
    fn get(&mut self, key: &Digest, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, until)) if *until > now => Some(*verdict),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Digest, verdict: Verdict, until: Instant, now: Instant) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= self.max {
                // Still full of live entries: the one expiring first goes.
                if let Some(first) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&first);
                }
            }
        }
        self.entries.insert(key, (verdict, until));
    }
}

pub struct KubernetesAuthorizer {
    client: kube::Client,
    ttl: Duration,
    denied_ttl: Duration,
    cache: Mutex<Cache>,
    /// Whether the last review failed to reach the API server (logged once per change).
    unreachable: AtomicBool,
}

impl KubernetesAuthorizer {
    pub fn new(client: kube::Client, settings: &KubernetesAuth) -> Self {
        KubernetesAuthorizer {
            client,
            ttl: settings.cache_ttl,
            denied_ttl: settings.denied_cache_ttl,
            cache: Mutex::new(Cache {
                entries: HashMap::default(),
                max: settings.max_cached,
            }),
            unreachable: AtomicBool::new(false),
        }
    }

    async fn check(&self, token: &str) -> Verdict {
        let key = digest(token.as_bytes());
        let now = Instant::now();
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key, now)
        {
            return v;
        }
        let verdict = match self.review(token).await {
            Ok(v) => {
                if self.unreachable.swap(false, Ordering::Relaxed) {
                    info!("metrics authorization: the API server answers again");
                }
                v
            }
            Err(e) => {
                if !self.unreachable.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "metrics authorization: cannot reach the API server; scrapes get 503 until it answers");
                }
                return Verdict::Unavailable;
            }
        };
        let ttl = if verdict == Verdict::Allowed {
            self.ttl
        } else {
            self.denied_ttl
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, verdict, now + ttl, now);
        verdict
    }

    /// A `TokenReview`, then, for a token that names someone, a `SubjectAccessReview` of `get`
    /// on `/metrics` for them.
    async fn review(&self, token: &str) -> Result<Verdict, kube::Error> {
        let reviews: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = reviews
            .create(&kube::api::PostParams::default(), &review)
            .await?;
        let status = answer.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let request = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let answer = access
            .create(&kube::api::PostParams::default(), &request)
            .await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        Ok(if allowed {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

pub struct BasicAuthorizer {
    users: BTreeMap<String, String>,
    ttl: Duration,
    /// SHA-256 of `user:password` pairs bcrypt verified, until when.
    verified: Mutex<HashMap<Digest, Instant>>,
}

impl BasicAuthorizer {
    fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some(encoded) = credentials(headers, "Basic") else {
            return Verdict::Unauthenticated;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Verdict::Unauthenticated;
        };
        let key = digest(&decoded);
        let now = Instant::now();
        {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            match verified.get(&key) {
                Some(until) if *until > now => return Verdict::Allowed,
                Some(_) => {
                    verified.remove(&key);
                }
                None => {}
            }
        }
        let Ok(pair) = std::str::from_utf8(&decoded) else {
            return Verdict::Unauthenticated;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return Verdict::Unauthenticated;
        };
        let Some(hash) = self.users.get(user) else {
            return Verdict::Unauthenticated;
        };
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return Verdict::Unauthenticated;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the users' number of passwords in use; expired ones go as they are met.
        verified.retain(|_, until| *until > now);
        verified.insert(key, now + self.ttl);
        Verdict::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AuthSettings, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_parse_by_mode_and_unknown_keys_are_errors() {
        assert!(matches!(parse("mode: none"), Ok(AuthSettings::None)));
        assert!(matches!(parse("mode: mtls"), Ok(AuthSettings::Mtls)));
        match parse("mode: kubernetes\ncache_ttl: 10s") {
            Ok(AuthSettings::Kubernetes(k)) => {
                assert_eq!(k.cache_ttl, Duration::from_secs(10));
                assert_eq!(k.max_cached, 1024);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("mode: kubernetes\ncache_tl: 10s").is_err());
        assert!(parse("mode: password").is_err());
        assert!(parse("users: {}").is_err(), "mode is required");
    }

    #[test]
    fn problems_name_what_is_missing() {
        assert!(!AuthSettings::Mtls.problems(false).is_empty());
        assert!(AuthSettings::Mtls.problems(true).is_empty());
        let basic = AuthSettings::Basic(BasicAuth {
            users: [("prom".to_string(), "plain-text".to_string())].into(),
            ..BasicAuth::default()
        });
        assert!(basic.problems(false)[0].contains("not a bcrypt hash"));
    }

    fn basic_header(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    #[test]
    fn basic_users_are_checked_against_their_bcrypt_hash() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuthorizer {
            users: [("prom".to_string(), hash)].into(),
            ttl: Duration::from_secs(60),
            verified: Mutex::default(),
        };
        assert_eq!(
            auth.check(&basic_header("prom", "s3cret")),
            Verdict::Allowed
        );
        // Remembered, and still only for the right password.
        assert_eq!(
            auth.check(&basic_header("prom", "s3cret")),
            Verdict::Allowed
        );
        assert_eq!(
            auth.check(&basic_header("prom", "wrong")),
            Verdict::Unauthenticated
        );
        assert_eq!(
            auth.check(&basic_header("other", "s3cret")),
            Verdict::Unauthenticated
        );
        assert_eq!(auth.check(&HeaderMap::new()), Verdict::Unauthenticated);
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, "Basic %%%".parse().unwrap());
        assert_eq!(auth.check(&garbage), Verdict::Unauthenticated);
    }

    #[test]
    fn the_cache_is_bounded_and_entries_expire() {
        let now = Instant::now();
        let mut cache = Cache {
            entries: HashMap::default(),
            max: 2,
        };
        cache.put(
            [1; 32],
            Verdict::Allowed,
            now + Duration::from_secs(10),
            now,
        );
        cache.put(
            [2; 32],
            Verdict::Forbidden,
            now + Duration::from_secs(20),
            now,
        );
        cache.put(
            [3; 32],
            Verdict::Allowed,
            now + Duration::from_secs(30),
            now,
        );
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(
            cache.get(&[1; 32], now),
            None,
            "the first to expire made room"
        );
        assert_eq!(cache.get(&[2; 32], now), Some(Verdict::Forbidden));
        let later = now + Duration::from_secs(25);
        assert_eq!(cache.get(&[2; 32], later), None, "expired");
        assert_eq!(cache.get(&[3; 32], later), Some(Verdict::Allowed));
    }
}

//! Authentication and per-key rate limits. `Auth` extracts the caller from
//! `Authorization: Bearer <key>` or `Basic` with the key's id and secret as user and
//! password (`presented_key`; 401 without a valid key); `Admin` also requires the admin
//! role (403). Both reject in the error shape of the router's state (`dialect::ApiState`).
//! Verified keys are cached for a few seconds (`Config::auth_cache_ttl`) so hot endpoints do
//! not hit the database for every request; revoking a key clears the cache of this process
//! at once and, on PostgreSQL, of every other (`easel_store::notify::AUTH`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use easel_core::auth::Principal;
use easel_core::{Error, ErrorKind};
use sha2::{Digest, Sha256};

use crate::dialect::ApiState;
use crate::AppState;

/// Token-bucket settings: `per_second` refill, `burst` capacity.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // Generous: the default setup is one local user.
        RateLimit {
            per_second: 100.0,
            burst: 500.0,
        }
    }
}

pub struct Authenticator {
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    limit: RateLimit,
    cache_ttl: Duration,
}

impl Authenticator {
    pub fn new(limit: RateLimit, cache_ttl: Duration) -> Authenticator {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            limit,
            cache_ttl,
        }
    }

    pub fn forget_all(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Take one token from the key's bucket, or say how many seconds until one is there.
    pub fn take(&self, key_id: &str) -> Result<(), u64> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = b
            .entry(key_id.to_string())
            .or_insert((self.limit.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.limit.per_second.max(1e-9);
            Err(wait.ceil().max(1.0) as u64)
        }
    }

    async fn principal(
        &self,
        state: &AppState,
        presented: &str,
    ) -> Result<Option<Principal>, Error> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some((p, at)) = self.cache.lock().ok().and_then(|c| c.get(&digest).cloned()) {
            if at.elapsed() < self.cache_ttl {
                return Ok(Some(p));
            }
        }
        let found = easel_store::users::authenticate(&state.store.db, presented).await?;
        if let (Some(p), Ok(mut c)) = (&found, self.cache.lock()) {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(digest, (p.clone(), Instant::now()));
        }
        Ok(found)
    }
}

/// The key presented in `Authorization` (`Bearer` or `Token` scheme, or `Basic` with the
/// key's two parts as user and password: `base64(key_id:secret)`, as Scenario's clients send
/// `api_key:api_secret`; an operator-chosen key, which has no id, as the user with an empty
/// password), or in the `x-api-market-key` header (the Replicate dialect's spec sends it so).
pub fn presented_key(parts: &Parts) -> Option<String> {
    if let Some(k) = parts
        .headers
        .get("x-api-market-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        return Some(k.to_string());
    }
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = v.trim().split_once(' ')?;
    let key = key.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        return basic_key(key);
    }
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| key.to_string())
        .filter(|k| !k.is_empty())
}

/// The key in a `Basic` credential: `key_id:secret` joined back into the key
/// (`auth::join_key`), or `key:` (an empty password) as the key itself.
fn basic_key(credential: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .ok()?;
    let pair = String::from_utf8(raw).ok()?;
    let (user, password) = pair.split_once(':')?;
    match (user, password) {
        ("", _) => None,
        (key, "") => Some(key.to_string()),
        (id, secret) => Some(easel_core::auth::join_key(id, secret)),
    }
}

/// Resolve and rate-limit the caller from a presented key.
pub async fn authenticate(state: &AppState, presented: Option<&str>) -> Result<Principal, Error> {
    let Some(key) = presented else {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            "missing API key: send `Authorization: Bearer <key>`",
        ));
    };
    let Some(p) = state.auth.principal(state, key).await? else {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            "invalid or revoked API key",
        ));
    };
    if let Err(wait) = state.auth.take(&p.key_id) {
        let mut e = Error::new(
            ErrorKind::RateLimited,
            "rate limit exceeded for this API key; slow down",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    Ok(p)
}

/// An authenticated caller. Rejects with the router state's error (see `dialect`).
pub struct Auth(pub Principal);

impl<S: ApiState> FromRequestParts<S> for Auth {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let p = authenticate(state.app(), presented_key(parts).as_deref()).await?;
        parts.extensions.insert(p.clone());
        // The access log's line for this request names the key.
        tracing::Span::current().record("key_id", tracing::field::display(&p.key_id));
        Ok(Auth(p))
    }
}

/// An authenticated admin.
pub struct Admin(pub Principal);

impl<S: ApiState> FromRequestParts<S> for Admin {
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        if !p.is_admin() {
            return Err(
                Error::new(ErrorKind::Forbidden, "this endpoint needs an admin key").into(),
            );
        }
        Ok(Admin(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_burst_and_says_when() {
        let a = Authenticator::new(
            RateLimit {
                per_second: 1.0,
                burst: 2.0,
            },
            Duration::from_secs(10),
        );
        assert!(a.take("k").is_ok());
        assert!(a.take("k").is_ok());
        assert_eq!(a.take("k"), Err(1));
        assert!(a.take("other").is_ok(), "buckets are per key");
    }

    fn parts(authorization: &str) -> Parts {
        let (parts, ()) = axum::http::Request::builder()
            .header("authorization", authorization)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn keys_come_as_bearer_or_as_a_basic_pair() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let id = easel_core::id::new(easel_core::id::KEY);
        let key = easel_core::auth::join_key(&id, "s3cr3t");
        assert_eq!(
            presented_key(&parts(&format!("Bearer {key}"))),
            Some(key.clone())
        );
        let basic = format!("Basic {}", b64(&format!("{id}:s3cr3t")));
        assert_eq!(presented_key(&parts(&basic)), Some(key.clone()));
        // An operator-chosen key as the user, no password.
        assert_eq!(
            presented_key(&parts(&format!("Basic {}", b64("my-own-key:")))),
            Some("my-own-key".into())
        );
        assert_eq!(presented_key(&parts(&format!("Basic {}", b64(":x")))), None);
        assert_eq!(presented_key(&parts("Basic not-base64!")), None);
        assert_eq!(presented_key(&parts("Digest abc")), None);
    }
}

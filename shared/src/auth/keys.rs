//! The isolate's verification keys per identity provider: fetched from the JWKS (directly or
//! through OIDC discovery), trusted for the `Cache-Control: max-age` clamped to the provider's
//! bounds, refetched on an unknown `kid` — at most one fetch per `refetch_interval` per
//! provider, shared by every request waiting for it — and kept serving while the IdP is down
//! for up to `max_stale`.

use super::alg::JwsAlgorithm;
use super::jwk::{parse_jwks, PublicKey};
use super::policy::{IdentityProvider, KeySource};
use super::token::TokenError;
use crate::access_log::event_line;
use crate::platform::{Clock, Http, HttpRequest, Log, Secrets, SharedCache};
use crate::problem::ErrorCode;
use crate::single_flight::SingleFlight;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const MAX_JWKS_BYTES: usize = 512 * 1024;

/// How often a request waiting for another request's key fetch checks whether it is done.
const WAIT_TICK_MS: u64 = 5;

/// A waiter waits at most as long as two fetches (discovery, then JWKS) may take.
fn wait_ticks(idp: &IdentityProvider) -> u32 {
    u32::try_from((2 * idp.timeout_ms) / WAIT_TICK_MS + 1).unwrap_or(u32::MAX)
}
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct KeysState {
    keys: Vec<Rc<PublicKey>>,
    loaded: bool,
    fresh_until: u64,
    last_attempt: Option<u64>,
    last_error: Option<String>,
    jwks_uri: Option<String>,
    fetches: u64,
}

impl KeysState {
    /// True if no fetch was attempted within the provider's refetch interval (a clock that
    /// went backwards counts as long ago): the one rule that bounds fetches per provider.
    fn may_fetch(&self, now: u64, idp: &IdentityProvider) -> bool {
        self.last_attempt
            .is_none_or(|t| now < t || now - t >= idp.refetch_interval_ms)
    }
}

#[derive(Default)]
struct ProviderKeys {
    flight: SingleFlight,
    state: RefCell<KeysState>,
}

/// Keys of every provider the isolate has seen, by [`IdentityProvider::store_id`].
#[derive(Default)]
pub struct KeyStore {
    providers: RefCell<HashMap<String, Rc<ProviderKeys>>>,
}

/// What a fetch brought.
struct Fetched {
    body: Vec<u8>,
    keys: Vec<PublicKey>,
    skipped: Vec<String>,
    ttl_ms: u64,
    jwks_uri: String,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        KeyStore::default()
    }

    fn provider(&self, idp: &IdentityProvider) -> Rc<ProviderKeys> {
        self.providers
            .borrow_mut()
            .entry(idp.store_id().to_string())
            .or_default()
            .clone()
    }

    /// The key to verify a token of `idp` with `kid` and `alg`. Fetches keys when none are
    /// loaded, they are past their TTL, or `kid` is unknown — unless a fetch was attempted
    /// within `refetch_interval`; joins a fetch another request is running.
    ///
    /// Errors: `unknown_key` (no such `kid`, or no `kid` and not exactly one fitting key),
    /// `algorithm_not_allowed` (the `kid`'s key does not fit `alg`), `idp_unavailable` (no
    /// keys could be fetched, or the cached ones are older than `max_stale`),
    /// `internal_error` (an HMAC provider's secret is not set).
    pub async fn key_for<P: Http + Clock + Log + Secrets + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        kid: Option<&str>,
        alg: JwsAlgorithm,
    ) -> Result<Rc<PublicKey>, TokenError> {
        match &idp.source {
            KeySource::HmacSecret(name) => return self.hmac_key(p, idp, name),
            KeySource::None => {
                return Err(TokenError::new(
                    ErrorCode::UnknownKey,
                    "the provider has no keys",
                ))
            }
            KeySource::Jwks(_) | KeySource::Discovery(_) => {}
        }
        let pk = self.provider(idp);
        let now = p.now_ms();
        let wants_fetch = {
            let st = pk.state.borrow();
            let known = select(&st.keys, kid, alg).is_ok();
            let fresh = st.loaded && now < st.fresh_until;
            (!known || !fresh) && st.may_fetch(now, idp)
        };
        if wants_fetch || pk.flight.is_running() {
            self.shared_fetch(p, idp, &pk).await;
        }
        let now = p.now_ms();
        let st = pk.state.borrow();
        if !st.loaded {
            let why = st
                .last_error
                .clone()
                .unwrap_or_else(|| "keys not fetched yet".into());
            return Err(TokenError::new(ErrorCode::IdpUnavailable, why));
        }
        if now >= st.fresh_until.saturating_add(idp.max_stale_ms) {
            let why = format!(
                "cached keys are past max_stale; last error: {}",
                st.last_error.as_deref().unwrap_or("none")
            );
            return Err(TokenError::new(ErrorCode::IdpUnavailable, why));
        }
        select(&st.keys, kid, alg)
    }

    /// Fetches the keys of `idp` now (cron prefetch), within its refetch interval. Returns the
    /// number of keys held afterwards.
    pub async fn prefetch<P: Http + Clock + Log + Secrets + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
    ) -> usize {
        if matches!(idp.source, KeySource::HmacSecret(_) | KeySource::None) {
            return 0;
        }
        let pk = self.provider(idp);
        let now = p.now_ms();
        let allowed = pk.state.borrow().may_fetch(now, idp);
        if allowed {
            self.shared_fetch(p, idp, &pk).await;
        }
        let n = pk.state.borrow().keys.len();
        n
    }

    /// True if, at `now_ms`, the key `cache_id` may still verify tokens: the provider's keys
    /// still include it and are not past `max_stale` (a cached verified token is refused once
    /// its key left the JWKS, or once the keys are too old because the IdP stayed down).
    pub fn still_trusted(&self, idp: &IdentityProvider, cache_id: &str, now_ms: u64) -> bool {
        if matches!(idp.source, KeySource::HmacSecret(_)) {
            return true;
        }
        self.providers
            .borrow()
            .get(idp.store_id())
            .is_some_and(|pk| {
                let st = pk.state.borrow();
                now_ms < st.fresh_until.saturating_add(idp.max_stale_ms)
                    && st.keys.iter().any(|k| k.cache_id == cache_id)
            })
    }

    /// How many fetches were attempted for `idp` in this isolate (for tests and the admin API).
    pub fn fetch_count(&self, idp: &IdentityProvider) -> u64 {
        self.providers
            .borrow()
            .get(idp.store_id())
            .map_or(0, |pk| pk.state.borrow().fetches)
    }

    fn hmac_key<P: Secrets>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        name: &str,
    ) -> Result<Rc<PublicKey>, TokenError> {
        let pk = self.provider(idp);
        if let Some(k) = pk.state.borrow().keys.first() {
            return Ok(k.clone());
        }
        let secret = p.secret(name).ok_or_else(|| {
            TokenError::new(
                ErrorCode::InternalError,
                format!("secret {name} is not set"),
            )
        })?;
        let key = Rc::new(PublicKey::hmac(secret.as_bytes()));
        let mut st = pk.state.borrow_mut();
        st.keys = vec![key.clone()];
        st.loaded = true;
        st.fresh_until = u64::MAX / 4;
        Ok(key)
    }

    /// Runs a fetch for `idp`, or joins the one another request of this isolate is running.
    async fn shared_fetch<P: Http + Clock + Log + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
    ) {
        pk.flight
            .run(
                self.fetch(p, idp, pk),
                || p.sleep_ms(WAIT_TICK_MS),
                wait_ticks(idp),
            )
            .await;
    }

    /// Loads keys: a cold isolate first tries the location's shared cache; otherwise, and for
    /// every refetch, the IdP (whose answer then goes into the shared cache).
    async fn fetch<P: Http + Clock + Log + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
    ) {
        let started = p.now_ms();
        let (known_uri, cold) = {
            let mut st = pk.state.borrow_mut();
            st.last_attempt = Some(started);
            (st.jwks_uri.clone(), !st.loaded)
        };
        let shared_key = shared_cache_key(idp);
        if cold {
            if let Some(shared) = read_shared(p, &shared_key, started).await {
                let mut st = pk.state.borrow_mut();
                st.keys = shared.keys.into_iter().map(Rc::new).collect();
                st.loaded = true;
                st.fresh_until = shared.fresh_until;
                st.jwks_uri = Some(shared.jwks_uri);
                return;
            }
        }
        pk.state.borrow_mut().fetches += 1;
        let result = fetch_keys(p, idp, known_uri).await;
        let now = p.now_ms();
        match result {
            Ok(f) => {
                let entry = json!({"jwks": String::from_utf8_lossy(&f.body), "jwks_uri": f.jwks_uri, "fresh_until": now.saturating_add(f.ttl_ms)});
                {
                    let mut st = pk.state.borrow_mut();
                    let revoked = st
                        .keys
                        .iter()
                        .filter(|k| !f.keys.iter().any(|n| n.cache_id == k.cache_id))
                        .count();
                    st.keys = f.keys.into_iter().map(Rc::new).collect();
                    st.loaded = true;
                    st.fresh_until = now.saturating_add(f.ttl_ms);
                    st.last_error = None;
                    st.jwks_uri = Some(f.jwks_uri);
                    p.log_line(&event_line(
                        "jwks_fetched",
                        now,
                        json!({"provider": idp.name, "keys": st.keys.len(), "removed": revoked, "skipped": f.skipped, "ttl_s": f.ttl_ms / 1000}),
                    ));
                }
                if let Err(e) = p
                    .shared_put(&shared_key, entry.to_string().as_bytes(), f.ttl_ms / 1000)
                    .await
                {
                    p.log_line(&event_line(
                        "shared_cache_error",
                        now,
                        json!({"key": shared_key, "error": e.0}),
                    ));
                }
            }
            Err(e) => {
                let mut st = pk.state.borrow_mut();
                p.log_line(&event_line(
                    "jwks_fetch_failed",
                    now,
                    json!({"provider": idp.name, "error": e, "serving_cached": st.loaded}),
                ));
                st.last_error = Some(e);
            }
        }
    }
}

/// The shared-cache key of a provider's JWKS.
fn shared_cache_key(idp: &IdentityProvider) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "jwks:{}",
        crate::trace::hex(&Sha256::digest(idp.store_id().as_bytes())[..16])
    )
}

struct SharedKeys {
    keys: Vec<PublicKey>,
    fresh_until: u64,
    jwks_uri: String,
}

/// A JWKS another isolate of this location stored, if readable and still fresh.
async fn read_shared<P: SharedCache>(p: &P, key: &str, now: u64) -> Option<SharedKeys> {
    let bytes = p.shared_get(key).await.ok()??;
    let entry: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let fresh_until = entry.get("fresh_until")?.as_u64()?;
    if now >= fresh_until {
        return None;
    }
    let (keys, _) = parse_jwks(entry.get("jwks")?.as_str()?.as_bytes()).ok()?;
    Some(SharedKeys {
        keys,
        fresh_until,
        jwks_uri: entry.get("jwks_uri")?.as_str()?.to_string(),
    })
}

/// The key for `kid` (or the only key fitting `alg` when there is no `kid`).
fn select(
    keys: &[Rc<PublicKey>],
    kid: Option<&str>,
    alg: JwsAlgorithm,
) -> Result<Rc<PublicKey>, TokenError> {
    match kid {
        Some(kid) => {
            let mut named = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_none() {
                return Err(TokenError::new(
                    ErrorCode::UnknownKey,
                    "no key with this kid",
                ));
            }
            named.find(|k| k.fits(alg)).cloned().ok_or_else(|| {
                TokenError::new(
                    ErrorCode::AlgorithmNotAllowed,
                    format!("the kid's key does not fit {}", alg.as_str()),
                )
            })
        }
        None => {
            let mut fitting = keys.iter().filter(|k| k.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Ok(k.clone()),
                _ => Err(TokenError::new(
                    ErrorCode::UnknownKey,
                    "no kid, and not exactly one key fits the alg",
                )),
            }
        }
    }
}

async fn get_json<P: Http>(
    p: &P,
    url: &str,
    timeout_ms: u64,
    max: usize,
) -> Result<(Vec<u8>, Option<u64>), String> {
    let req = HttpRequest {
        method: "GET".into(),
        url: url.to_string(),
        headers: vec![("accept".into(), "application/json".into())],
        body: None,
        timeout_ms,
    };
    let resp = p
        .fetch_buffered(&req, max)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if resp.status != 200 {
        return Err(format!("{url}: status {}", resp.status));
    }
    let max_age = resp.headers.get("cache-control").and_then(max_age_ms);
    Ok((resp.body, max_age))
}

/// `max-age` of a `Cache-Control` value in ms; `no-store`/`no-cache` count as 0.
fn max_age_ms(cc: &str) -> Option<u64> {
    let mut age = None;
    for d in cc.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(|s| s.saturating_mul(1000));
        }
    }
    age
}

async fn fetch_keys<P: Http>(
    p: &P,
    idp: &IdentityProvider,
    known_uri: Option<String>,
) -> Result<Fetched, String> {
    let jwks_uri = match (&idp.source, known_uri) {
        (KeySource::Jwks(u), _) => u.clone(),
        (KeySource::Discovery(_), Some(u)) => u,
        (KeySource::Discovery(d), None) => {
            let (body, _) = get_json(p, d, idp.timeout_ms, MAX_DISCOVERY_BYTES).await?;
            let doc: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("discovery document: {e}"))?;
            if doc.get("issuer").and_then(|v| v.as_str()) != Some(idp.issuer.as_str()) {
                return Err(
                    "discovery document's issuer differs from the configured issuer".into(),
                );
            }
            let uri = doc
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or("discovery document has no jwks_uri")?;
            if !uri.starts_with("https://") && !super::is_loopback_http(uri) {
                return Err(format!("discovery jwks_uri {uri:?} is not https"));
            }
            uri.to_string()
        }
        (KeySource::HmacSecret(_) | KeySource::None, _) => {
            return Err("the provider has no JWKS".into())
        }
    };
    let (body, max_age) = get_json(p, &jwks_uri, idp.timeout_ms, MAX_JWKS_BYTES).await?;
    let (keys, skipped) = parse_jwks(&body)?;
    let ttl_ms = max_age
        .unwrap_or(idp.min_ttl_ms)
        .clamp(idp.min_ttl_ms, idp.max_ttl_ms);
    Ok(Fetched {
        body,
        keys,
        skipped,
        ttl_ms,
        jwks_uri,
    })
}

#[cfg(test)]
mod tests {
    use super::max_age_ms;

    #[test]
    fn cache_control_table() {
        for (cc, want) in [
            ("max-age=300", Some(300_000)),
            ("public, max-age=60, must-revalidate", Some(60_000)),
            ("no-store", Some(0)),
            ("private", None),
            ("max-age=abc", None),
        ] {
            assert_eq!(max_age_ms(cc), want, "{cc}");
        }
    }
}

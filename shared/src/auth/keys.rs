//! The isolate's verification keys per identity provider: fetched from the JWKS (directly or
//! through OIDC discovery), trusted for the `Cache-Control: max-age` clamped to the provider's
//! bounds, refetched on an unknown `kid` — at most one fetch per `refetch_interval` per
//! provider, shared by every request waiting for it — and kept serving while the IdP is down
//! for up to `max_stale`.
//!
//! Where every request runs in a fresh instance ([`Instances::reuses_instances`] false: Spin)
//! nothing in memory outlives the request, so the provider's whole state goes through the
//! platform's [`SharedCache`] instead: the last good JWKS with its `fresh_until` (kept until
//! `fresh_until + max_stale`), the time and error of the last fetch attempt (so the refetch
//! throttle and failed attempts hold across instances), and a best-effort "fetch in flight"
//! marker that concurrently running instances wait on instead of fetching too (the shared
//! cache has no compare-and-set, so two instances that claim the fetch within the same few
//! milliseconds may both fetch). Where instances are reused (Workers) the in-memory state is
//! primary and the shared cache only seeds a cold isolate, as before.

use super::alg::JwsAlgorithm;
use super::jwk::{parse_jwks, PublicKey};
use super::policy::{IdentityProvider, KeySource};
use super::token::TokenError;
use crate::access_log::event_line;
use crate::platform::{Clock, Http, HttpRequest, Instances, Log, Random, Secrets, SharedCache};
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

/// Fresh instances: how often an instance waiting for another instance's fetch polls the
/// shared state.
const SHARED_POLL_MS: u64 = 20;

/// Fresh instances: how long an instance that wrote the "fetch in flight" marker waits before
/// reading it back (instances that claimed the fetch at the same time then see one winner).
const CLAIM_SETTLE_MS: u64 = 15;

/// Fresh instances: how long a "fetch in flight" marker holds (two fetches, discovery then
/// JWKS, plus the claim's settle time); an instance that waited this long fetches itself.
fn flight_ms(idp: &IdentityProvider) -> u64 {
    idp.timeout_ms
        .saturating_mul(2)
        .saturating_add(CLAIM_SETTLE_MS)
}

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
    pub async fn key_for<P: Http + Clock + Log + Secrets + SharedCache + Random + Instances>(
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
        if p.reuses_instances() {
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
        } else {
            self.across_instances(p, idp, &pk, Some((kid, alg))).await;
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
    pub async fn prefetch<P: Http + Clock + Log + Secrets + SharedCache + Random + Instances>(
        &self,
        p: &P,
        idp: &IdentityProvider,
    ) -> usize {
        if matches!(idp.source, KeySource::HmacSecret(_) | KeySource::None) {
            return 0;
        }
        let pk = self.provider(idp);
        if !p.reuses_instances() {
            self.across_instances(p, idp, &pk, None).await;
            return pk.state.borrow().keys.len();
        }
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
        let cold = {
            let mut st = pk.state.borrow_mut();
            st.last_attempt = Some(started);
            !st.loaded
        };
        let shared_key = shared_cache_key(idp);
        if cold {
            if let Some(shared) = read_shared(p, &shared_key).await {
                if started < shared.fresh_until {
                    if let Some(keys) = shared.keys {
                        let mut st = pk.state.borrow_mut();
                        st.keys = keys.into_iter().map(Rc::new).collect();
                        st.loaded = true;
                        st.fresh_until = shared.fresh_until;
                        st.jwks_uri = shared.jwks_uri;
                        return;
                    }
                }
            }
        }
        if let Some(fetched) = self.fetch_from_idp(p, idp, pk).await {
            let entry = SharedEntry {
                jwks: Some(fetched.body),
                jwks_uri: Some(fetched.jwks_uri),
                fresh_until: fetched.fresh_until,
                last_attempt: Some(started),
                last_error: None,
            };
            put_shared(p, &shared_key, &entry, fetched.ttl_ms / 1000).await;
        }
    }

    /// Fetches the keys from the IdP and applies the result to the in-memory state (logging
    /// `jwks_fetched` or `jwks_fetch_failed`). Returns what a successful fetch brought, for
    /// the shared cache.
    async fn fetch_from_idp<P: Http + Clock + Log>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
    ) -> Option<Stored> {
        let known_uri = {
            let mut st = pk.state.borrow_mut();
            st.fetches += 1;
            st.jwks_uri.clone()
        };
        let result = fetch_keys(p, idp, known_uri).await;
        let now = p.now_ms();
        let mut st = pk.state.borrow_mut();
        match result {
            Ok(f) => {
                let revoked = st
                    .keys
                    .iter()
                    .filter(|k| !f.keys.iter().any(|n| n.cache_id == k.cache_id))
                    .count();
                st.keys = f.keys.into_iter().map(Rc::new).collect();
                st.loaded = true;
                st.fresh_until = now.saturating_add(f.ttl_ms);
                st.last_error = None;
                st.jwks_uri = Some(f.jwks_uri.clone());
                p.log_line(&event_line(
                    "jwks_fetched",
                    now,
                    json!({"provider": idp.name, "keys": st.keys.len(), "removed": revoked, "skipped": f.skipped, "ttl_s": f.ttl_ms / 1000}),
                ));
                Some(Stored {
                    body: String::from_utf8_lossy(&f.body).into_owned(),
                    jwks_uri: f.jwks_uri,
                    fresh_until: st.fresh_until,
                    ttl_ms: f.ttl_ms,
                })
            }
            Err(e) => {
                p.log_line(&event_line(
                    "jwks_fetch_failed",
                    now,
                    json!({"provider": idp.name, "error": e, "serving_cached": st.loaded}),
                ));
                st.last_error = Some(e);
                None
            }
        }
    }

    /// Fresh instances (nothing in memory outlives a request): loads the provider's state
    /// from the shared cache, then fetches under the same rule as a reused instance — keys
    /// missing, past their TTL, or without `want`'s kid (`None`: the tick's prefetch, which
    /// always wants a fetch), and no attempt within `refetch_interval` — unless another
    /// instance's fetch is in flight, which it waits for (bounded) instead.
    async fn across_instances<P: Http + Clock + Log + SharedCache + Random>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
        want: Option<(Option<&str>, JwsAlgorithm)>,
    ) {
        let key = shared_cache_key(idp);
        let flight_key = format!("{key}:flight");
        let entry = read_shared(p, &key).await;
        let mut body = None;
        if let Some(e) = entry {
            body = e.body.clone();
            adopt(pk, e);
        }
        let now = p.now_ms();
        let wants_keys = {
            let st = pk.state.borrow();
            want.is_none_or(|(kid, alg)| {
                let known = select(&st.keys, kid, alg).is_ok();
                let fresh = st.loaded && now < st.fresh_until;
                !known || !fresh
            })
        };
        if !wants_keys {
            return;
        }
        if let Some(since) = self.flight_in_progress(p, idp, pk, &flight_key).await {
            if self.wait_for_flight(p, idp, pk, &key, since).await {
                return;
            }
            // The marker's fetch never landed (its instance died or hung): fetch ourselves.
        } else {
            if !pk.state.borrow().may_fetch(now, idp) {
                return;
            }
            let nonce = p.next_u64();
            let marker = json!({"since": now, "by": nonce.to_string()}).to_string();
            let ttl_s = flight_ms(idp).div_ceil(1000).max(1);
            if let Err(e) = p.shared_put(&flight_key, marker.as_bytes(), ttl_s).await {
                log_cache_error(p, &flight_key, &e.0);
            }
            p.sleep_ms(CLAIM_SETTLE_MS).await;
            let winner = read_flight(p, &flight_key).await;
            if let Some((since, by)) = winner {
                if by != nonce.to_string() && self.wait_for_flight(p, idp, pk, &key, since).await {
                    return;
                }
            }
        }
        let started = p.now_ms();
        pk.state.borrow_mut().last_attempt = Some(started);
        let stored = self.fetch_from_idp(p, idp, pk).await;
        let entry = {
            let st = pk.state.borrow();
            match stored {
                Some(s) => SharedEntry {
                    jwks: Some(s.body),
                    jwks_uri: Some(s.jwks_uri),
                    fresh_until: s.fresh_until,
                    last_attempt: Some(started),
                    last_error: None,
                },
                None => SharedEntry {
                    jwks: body.filter(|_| st.loaded),
                    jwks_uri: st.jwks_uri.clone(),
                    fresh_until: st.fresh_until,
                    last_attempt: Some(started),
                    last_error: st.last_error.clone(),
                },
            }
        };
        // Kept while the keys may be served (stale up to max_stale), while the attempt still
        // throttles the next one, and at least as long as this fetch's flight marker (which
        // would otherwise look like a fetch still in flight).
        let now = p.now_ms();
        let keep_until = entry
            .jwks
            .as_ref()
            .map_or(0, |_| entry.fresh_until.saturating_add(idp.max_stale_ms))
            .max(started.saturating_add(idp.refetch_interval_ms.max(flight_ms(idp))));
        let ttl_s = keep_until.saturating_sub(now).div_ceil(1000).max(1);
        put_shared(p, &key, &entry, ttl_s).await;
    }

    /// The start of another instance's fetch still in flight, if its marker is newer than the
    /// last recorded attempt and not older than [`flight_ms`].
    async fn flight_in_progress<P: Clock + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
        flight_key: &str,
    ) -> Option<u64> {
        let (since, _) = read_flight(p, flight_key).await?;
        let last = pk.state.borrow().last_attempt.unwrap_or(0);
        let running = since > last && p.now_ms().saturating_sub(since) < flight_ms(idp);
        running.then_some(since)
    }

    /// Polls the shared state until a fetch that started at `since` (or later) has recorded
    /// its result, for at most [`flight_ms`]; adopts that state. True if it landed.
    async fn wait_for_flight<P: Clock + SharedCache>(
        &self,
        p: &P,
        idp: &IdentityProvider,
        pk: &ProviderKeys,
        key: &str,
        since: u64,
    ) -> bool {
        for _ in 0..flight_ms(idp) / SHARED_POLL_MS + 1 {
            p.sleep_ms(SHARED_POLL_MS).await;
            if let Some(e) = read_shared(p, key).await {
                if e.last_attempt.is_some_and(|t| t >= since) {
                    adopt(pk, e);
                    return true;
                }
            }
        }
        false
    }
}

/// What a successful IdP fetch stored in memory, for the shared cache.
struct Stored {
    body: String,
    jwks_uri: String,
    fresh_until: u64,
    ttl_ms: u64,
}

/// The shared-cache entry of a provider (`jwks:v2:…`, JSON): the last good JWKS and when it
/// stops being fresh, and the last fetch attempt with its error.
struct SharedEntry {
    jwks: Option<String>,
    jwks_uri: Option<String>,
    fresh_until: u64,
    last_attempt: Option<u64>,
    last_error: Option<String>,
}

/// A provider's shared entry as read: its keys parsed.
struct SharedKeys {
    keys: Option<Vec<PublicKey>>,
    body: Option<String>,
    fresh_until: u64,
    jwks_uri: Option<String>,
    last_attempt: Option<u64>,
    last_error: Option<String>,
}

/// Replaces the in-memory state of a fresh instance with the shared one.
fn adopt(pk: &ProviderKeys, shared: SharedKeys) {
    let mut st = pk.state.borrow_mut();
    match shared.keys {
        Some(keys) => {
            st.keys = keys.into_iter().map(Rc::new).collect();
            st.loaded = true;
        }
        None => {
            st.keys.clear();
            st.loaded = false;
        }
    }
    st.fresh_until = shared.fresh_until;
    st.jwks_uri = shared.jwks_uri;
    st.last_attempt = shared.last_attempt;
    st.last_error = shared.last_error;
}

fn log_cache_error<P: Clock + Log>(p: &P, key: &str, error: &str) {
    p.log_line(&event_line(
        "shared_cache_error",
        p.now_ms(),
        json!({"key": key, "error": error}),
    ));
}

/// Writes a provider's shared entry for `ttl_s` seconds (a failure is logged).
async fn put_shared<P: Clock + Log + SharedCache>(
    p: &P,
    key: &str,
    entry: &SharedEntry,
    ttl_s: u64,
) {
    let value = json!({
        "jwks": entry.jwks,
        "jwks_uri": entry.jwks_uri,
        "fresh_until": entry.fresh_until,
        "last_attempt": entry.last_attempt,
        "last_error": entry.last_error,
    });
    if let Err(e) = p.shared_put(key, value.to_string().as_bytes(), ttl_s).await {
        log_cache_error(p, key, &e.0);
    }
}

/// The "fetch in flight" marker: when it started and the claiming instance's nonce.
async fn read_flight<P: SharedCache>(p: &P, key: &str) -> Option<(u64, String)> {
    let bytes = p.shared_get(key).await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        v.get("since")?.as_u64()?,
        v.get("by")?.as_str()?.to_string(),
    ))
}

/// The shared-cache key of a provider's state (`v2`: the entry carries the last attempt;
/// entries of the older format, under `jwks:<hash>`, are not read).
fn shared_cache_key(idp: &IdentityProvider) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "jwks:v2:{}",
        crate::trace::hex(&Sha256::digest(idp.store_id().as_bytes())[..16])
    )
}

/// A provider's shared entry, if readable (its keys may be past `fresh_until`, or absent when
/// only failed attempts were recorded).
async fn read_shared<P: SharedCache>(p: &P, key: &str) -> Option<SharedKeys> {
    let bytes = p.shared_get(key).await.ok()??;
    let entry: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let text = |name: &str| entry.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let body = text("jwks");
    let keys = match &body {
        Some(b) => Some(parse_jwks(b.as_bytes()).ok()?.0),
        None => None,
    };
    Some(SharedKeys {
        keys,
        body,
        fresh_until: entry.get("fresh_until")?.as_u64()?,
        jwks_uri: text("jwks_uri"),
        last_attempt: entry.get("last_attempt").and_then(|v| v.as_u64()),
        last_error: text("last_error"),
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

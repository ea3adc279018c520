//! The authentication stage: who is calling.
//!
//! Runs after routing, for routes with an `auth` policy. A request with no credential passes
//! as anonymous only where the policy accepts `anonymous`; a request with a bearer token must
//! present a valid one (an invalid credential is never downgraded to anonymous).
//!
//! JWT verification, in order: size limit → strict parse (`alg` allow-list, no `none`, no
//! `crit`) → issuer picks the provider (keys only ever come from the configured provider,
//! never from the token's `jku`/`jwk`/`x5u`/`x5c`) → key family must fit the algorithm (no
//! HMAC with a public key) → claim checks → key lookup (JWKS cache, single-flight refetch) →
//! signature (HMAC in wasm; RSA/EC/EdDSA through the platform's `Crypto`, WebCrypto on
//! Workers). A verified token is cached in memory by a keyed hash of its text (compared in full
//! on a hit) until `exp`; cached tokens still go through the route's claim checks, and are
//! dropped when their key leaves the JWKS. Where instances are not reused (Spin), a second tier
//! in the platform's shared cache records, under the token's SHA-256, which key verified it
//! (see [`SharedAttestation`]).

mod alg;
mod api_key;
mod cache;
mod introspection;
mod jwk;
mod keys;
mod mint;
mod policy;
#[cfg(feature = "soft-crypto")]
pub mod soft_crypto;
mod token;

pub use alg::{AlgorithmSet, JwsAlgorithm, KeyFamily};
pub use api_key::{
    credential_key, presented_key, verify_api_key, CredentialCache, CredentialRecord,
    CredentialStatus,
};
pub use cache::{
    shared_key, SharedAttestation, TokenCache, TokenSlot, VerifiedToken, BYTES_PER_ENTRY,
    MAX_LEEWAY_S, SHARED_TTL_CAP_S,
};
pub use introspection::{introspect, IntrospectionCache, SharedIntrospection};
pub use jwk::{parse_jwks, KeyMaterial, PublicKey, MIN_RSA_BITS};
pub use keys::KeyStore;
pub use mint::{mint, MintAlgorithm, MintToken};
pub use policy::{
    ApiKeyRules, AuthMethod, AuthPolicy, CertificateMatch, IdentityHeaders, IdentityProvider,
    IntrospectionEndpoint, IntrospectionRules, JwtRules, KeySource, MtlsRules,
};
pub use token::{
    check_claims, claims_from_map, parse_token, ClaimRules, ParsedToken, TokenClaims, TokenError,
};

use crate::config::CompiledConfig;
use crate::headers::HeaderList;
use crate::platform::{ClientCertificate, Platform};
use crate::problem::{ErrorCode, LocalReply};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::rc::Rc;

/// The caller, as authentication established it.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `jwt`, `introspection`, `mtls` or `anonymous`.
    pub method: &'static str,
    /// The token's claims (None for anonymous).
    pub claims: Option<Rc<TokenClaims>>,
    /// The environment the credential belongs to, when its record says (API keys); for
    /// tokens, authorization reads it from a claim.
    pub environment: Option<String>,
}

impl Principal {
    /// An anonymous caller.
    pub fn anonymous() -> Self {
        Principal {
            method: "anonymous",
            claims: None,
            environment: None,
        }
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> Option<&str> {
        self.claims.as_ref()?.subject.as_deref()
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> Option<&str> {
        self.claims.as_ref()?.issuer.as_deref()
    }

    /// The client application (`azp` / `client_id`).
    pub fn application(&self) -> Option<&str> {
        self.claims.as_ref()?.application.as_deref()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        self.claims.as_ref().map_or(&[], |c| c.scopes.as_slice())
    }
}

/// The isolate's authentication state: the key store and the verified-token cache.
pub struct Authenticator {
    keys: KeyStore,
    tokens: TokenCache,
    introspections: IntrospectionCache,
    credentials: CredentialCache,
}

/// Verified tokens kept per isolate by default.
pub const DEFAULT_TOKEN_CACHE: usize = 4096;

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(DEFAULT_TOKEN_CACHE)
    }
}

impl Authenticator {
    /// State with a token cache of `token_cache` entries.
    pub fn new(token_cache: usize) -> Self {
        Authenticator {
            keys: KeyStore::new(),
            tokens: TokenCache::new(token_cache),
            introspections: IntrospectionCache::new(token_cache),
            credentials: CredentialCache::new(token_cache),
        }
    }

    /// The key store (cron prefetch, tests).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The verified-token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Authenticates a request under a route's policy. `snapshot` is the Registry snapshot,
    /// if one is loaded (API keys are looked up there first).
    ///
    /// Errors: a 401 reply with `WWW-Authenticate` and the reason code, or 503
    /// `idp_unavailable` when keys cannot be had. Never logs the token.
    pub async fn authenticate<P: Platform>(
        &self,
        p: &P,
        config: &CompiledConfig,
        policy: &AuthPolicy,
        snapshot: Option<&crate::snapshot::Snapshot>,
        headers: &HeaderList,
        query: Option<&str>,
    ) -> Result<Principal, LocalReply> {
        // Authorization is read only where a bearer method is accepted: elsewhere it is not ours.
        let token = if policy.methods.contains(&AuthMethod::Bearer) {
            bearer_token(headers).map_err(reply)?
        } else {
            None
        };
        // The first accepted method whose credential is presented decides; anonymous is the
        // fallback when none is presented, wherever it is listed.
        for method in &policy.methods {
            match method {
                AuthMethod::Bearer => {
                    if let Some(token) = token {
                        return self
                            .verify_bearer(p, config, policy, token)
                            .await
                            .map_err(reply);
                    }
                }
                AuthMethod::Mtls => {
                    if let (Some(rules), Some(cert)) =
                        (&policy.mtls, p.client_certificate().filter(|c| c.presented))
                    {
                        return verify_certificate(rules, &cert).map_err(reply);
                    }
                }
                AuthMethod::ApiKey => {
                    if let Some(rules) = &policy.api_key {
                        let view = crate::route::QueryView::new(query.unwrap_or(""));
                        let presented =
                            presented_key(headers, &view, &rules.header, rules.query.as_deref())
                                .map_err(reply)?;
                        if let Some(key) = presented {
                            return verify_api_key(p, &self.credentials, snapshot, &key)
                                .await
                                .map_err(reply);
                        }
                    }
                }
                AuthMethod::Anonymous => {}
            }
        }
        if policy.anonymous {
            return Ok(Principal::anonymous());
        }
        Err(reply(TokenError::new(
            ErrorCode::MissingCredentials,
            "no accepted credential presented",
        )))
    }

    async fn verify_bearer<P: Platform>(
        &self,
        p: &P,
        config: &CompiledConfig,
        policy: &AuthPolicy,
        token: &str,
    ) -> Result<Principal, TokenError> {
        // A compact JWS has exactly two dots; anything else is an opaque token. (Counted only
        // where both kinds are accepted: a pass over the token costs ~0.2 µs in wasm.)
        let looks_like_jws = || token.bytes().filter(|b| *b == b'.').count() == 2;
        match (&policy.jwt, &policy.introspection) {
            (Some(rules), None) => self.verify_jwt(p, config, rules, token).await,
            (Some(rules), Some(_)) if looks_like_jws() => {
                self.verify_jwt(p, config, rules, token).await
            }
            (_, Some(rules)) => self.verify_opaque(p, config, rules, token).await,
            (None, None) => Err(TokenError::new(
                ErrorCode::InternalError,
                "bearer accepted without rules",
            )),
        }
    }

    async fn verify_opaque<P: Platform>(
        &self,
        p: &P,
        config: &CompiledConfig,
        rules: &IntrospectionRules,
        token: &str,
    ) -> Result<Principal, TokenError> {
        let idp = &config.identity_providers()[rules.provider];
        let Some(endpoint) = &idp.introspection else {
            return Err(TokenError::new(
                ErrorCode::InternalError,
                "provider has no introspection endpoint",
            ));
        };
        if token.len() > 8192 {
            return Err(TokenError::new(
                ErrorCode::TokenTooLarge,
                format!("{} bytes", token.len()),
            ));
        }
        let now_ms = p.now_ms();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.introspections.get(&hash, now_ms) {
            Some(cached) => cached,
            None => {
                // Where every request runs in a fresh instance, an earlier instance's result
                // (kept no longer than it would have been kept here) stands in for the call.
                let shared =
                    (!p.reuses_instances()).then(|| SharedIntrospection::new(endpoint, token));
                let earlier = match &shared {
                    Some(s) => s.read(p).await,
                    None => None,
                };
                match earlier {
                    Some(result) => result.map(Rc::new),
                    None => {
                        let fresh = introspect(p, endpoint, idp.timeout_ms, token)
                            .await?
                            .map(Rc::new);
                        // Reused for the TTL, never beyond the token's own exp.
                        let mut until = now_ms.saturating_add(endpoint.cache_ttl_ms);
                        if let Some(exp) = fresh.as_ref().and_then(|c| c.expires) {
                            until = until.min(u64::try_from(exp).unwrap_or(0).saturating_mul(1000));
                        }
                        self.introspections.insert(hash, fresh.clone(), until);
                        if let Some(s) = &shared {
                            s.write(p, fresh.as_deref(), now_ms, until).await;
                        }
                        fresh
                    }
                }
            }
        };
        let Some(claims) = claims else {
            return Err(TokenError::new(
                ErrorCode::TokenInactive,
                "introspection: active=false",
            ));
        };
        check_claims(&claims, &rules.claims, (now_ms / 1000) as i64)?;
        Ok(Principal {
            method: "introspection",
            claims: Some(claims),
            environment: None,
        })
    }

    async fn verify_jwt<P: Platform>(
        &self,
        p: &P,
        config: &CompiledConfig,
        rules: &JwtRules,
        token: &str,
    ) -> Result<Principal, TokenError> {
        let now_s = (p.now_ms() / 1000) as i64;
        if token.len() as u64 > rules.max_token_bytes {
            return Err(TokenError::new(
                ErrorCode::TokenTooLarge,
                format!("{} bytes", token.len()),
            ));
        }
        let slot = self.tokens.slot(p, token);
        let providers = config.identity_providers();

        if let Some(hit) = self.tokens.get(slot, token, now_s) {
            let provider = rules
                .providers
                .iter()
                .map(|&i| &providers[i])
                .find(|idp| idp.store_id() == hit.provider_store_id);
            match provider {
                Some(idp) if self.keys.still_trusted(idp, &hit.key_id, p.now_ms()) => {
                    if !rules.algorithms.contains(hit.alg) {
                        return Err(TokenError::new(
                            ErrorCode::AlgorithmNotAllowed,
                            hit.alg.as_str(),
                        ));
                    }
                    check_claims(&hit.claims, &rules.claims, now_s)?;
                    return Ok(Principal {
                        method: "jwt",
                        claims: Some(hit.claims.clone()),
                        environment: None,
                    });
                }
                Some(_) => self.tokens.remove(slot), // its key was revoked: verify again
                None => {} // another route's provider: verify as usual (will fail on issuer)
            }
        }

        let parsed = parse_token(token, rules.max_token_bytes)?;
        if !rules.algorithms.contains(parsed.alg) {
            return Err(TokenError::new(
                ErrorCode::AlgorithmNotAllowed,
                parsed.alg.as_str(),
            ));
        }
        let idp = rules
            .providers
            .iter()
            .map(|&i| &providers[i])
            .find(|idp| parsed.claims.issuer.as_deref() == Some(idp.issuer.as_str()))
            .ok_or_else(|| {
                TokenError::new(
                    ErrorCode::WrongIssuer,
                    format!("iss {:?}", parsed.claims.issuer),
                )
            })?;
        let hmac_provider = matches!(idp.source, KeySource::HmacSecret(_));
        if hmac_provider != (parsed.alg.family() == KeyFamily::Hmac) {
            return Err(TokenError::new(
                ErrorCode::AlgorithmNotAllowed,
                format!("{} with provider {}", parsed.alg.as_str(), idp.name),
            ));
        }
        check_claims(&parsed.claims, &rules.claims, now_s)?;
        if let Some(len) = parsed.alg.signature_len() {
            if parsed.signature.len() != len {
                return Err(TokenError::new(ErrorCode::BadSignature, "signature length"));
            }
        }

        let key = self
            .keys
            .key_for(p, idp, parsed.kid.as_deref(), parsed.alg)
            .await?;
        let signing_input = &token.as_bytes()[..parsed.signing_input_len];
        let valid = match &key.material {
            KeyMaterial::Hmac(secret) => {
                verify_hmac(parsed.alg, secret, signing_input, &parsed.signature)?
            }
            KeyMaterial::Rsa { n, .. } if parsed.signature.len() != n.len() => false,
            _ => {
                // Where every request runs in a fresh instance, the in-memory cache never
                // hits: an earlier instance's verification, recorded in the shared cache
                // under the token's SHA-256 with the key it used, stands in for the check
                // (the key has just been looked up by the token's kid, so a revoked or
                // rotated-out key is not found and no attestation for it is read).
                let attested = match p.reuses_instances() {
                    true => None,
                    false => {
                        let shared = SharedAttestation::new(token, parsed.alg, idp, &key);
                        let found = shared.read(p).await;
                        Some((shared, found))
                    }
                };
                match attested {
                    Some((_, true)) => true,
                    _ => {
                        let ok = p
                            .verify_signature(parsed.alg, &key, signing_input, &parsed.signature)
                            .await
                            .map_err(|e| {
                                TokenError::new(ErrorCode::InternalError, format!("verify: {e}"))
                            })?;
                        if let (true, Some((shared, _))) = (ok, attested) {
                            shared.write(p, parsed.claims.expires, now_s).await;
                        }
                        ok
                    }
                }
            }
        };
        if !valid {
            return Err(TokenError::new(
                ErrorCode::BadSignature,
                format!("kid {:?}", parsed.kid),
            ));
        }
        let claims = Rc::new(parsed.claims);
        self.tokens.insert(
            slot,
            VerifiedToken {
                token: token.into(),
                alg: parsed.alg,
                provider_store_id: idp.store_id().to_string(),
                key_id: key.cache_id.clone(),
                claims: claims.clone(),
            },
        );
        Ok(Principal {
            method: "jwt",
            claims: Some(claims),
            environment: None,
        })
    }

    /// Fetches the keys of every JWKS provider of `config` (the cron job).
    pub async fn prefetch<P: Platform>(&self, p: &P, config: &CompiledConfig) -> usize {
        let mut total = 0;
        for idp in config.identity_providers() {
            total += self.keys.prefetch(p, idp).await;
        }
        total
    }
}

/// Checks a presented client certificate: the edge must have verified it, it must not be
/// revoked, and it must be one the route maps to a consumer.
fn verify_certificate(
    rules: &MtlsRules,
    cert: &ClientCertificate,
) -> Result<Principal, TokenError> {
    if !cert.verified {
        let why = cert
            .failure
            .clone()
            .unwrap_or_else(|| "not verified".into());
        return Err(TokenError::new(ErrorCode::CertificateInvalid, why));
    }
    if cert.revoked {
        return Err(TokenError::new(ErrorCode::CertificateInvalid, "revoked"));
    }
    let fingerprint: String = cert
        .fingerprint_sha256
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let consumer = rules
        .certificates
        .iter()
        .find(|(m, _)| match m {
            CertificateMatch::Fingerprint(f) => *f == fingerprint,
            CertificateMatch::SubjectDn(dn) => *dn == cert.subject_dn,
        })
        .map(|(_, c)| c.clone())
        .ok_or_else(|| {
            TokenError::new(
                ErrorCode::UnknownCertificate,
                format!("subject {:?}", cert.subject_dn),
            )
        })?;
    let mut all = serde_json::Map::new();
    all.insert("cert_fingerprint_sha256".into(), fingerprint.into());
    all.insert("cert_subject_dn".into(), cert.subject_dn.clone().into());
    let claims = TokenClaims {
        issuer: Some(cert.issuer_dn.clone()),
        subject: Some(consumer),
        audiences: Vec::new(),
        expires: None,
        not_before: None,
        issued_at: None,
        application: None,
        scopes: Vec::new(),
        all,
    };
    Ok(Principal {
        method: "mtls",
        claims: Some(Rc::new(claims)),
        environment: None,
    })
}

/// HMAC check in constant time. The key must be at least as long as the hash (RFC 7518 §3.2).
fn verify_hmac(
    alg: JwsAlgorithm,
    key: &[u8],
    input: &[u8],
    sig: &[u8],
) -> Result<bool, TokenError> {
    if key.len() * 8 < alg.hash_bits() as usize {
        return Err(TokenError::new(
            ErrorCode::InternalError,
            "HMAC secret shorter than the hash",
        ));
    }
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(input);
                m.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    Ok(match alg {
        JwsAlgorithm::Hs256 => check::<Hmac<Sha256>>(key, input, sig),
        JwsAlgorithm::Hs384 => check::<Hmac<Sha384>>(key, input, sig),
        JwsAlgorithm::Hs512 => check::<Hmac<Sha512>>(key, input, sig),
        _ => false,
    })
}

/// The bytes of RFC 6750 `b64token`: ALPHA, DIGIT, `-._~+/` and `=`. A table lookup per byte
/// (a `char` test against a string was ~2.5× dearer in wasm on a 660-byte token).
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        i += 1;
    }
    table
};

/// The bearer token of `Authorization` (RFC 6750 §2.1), `None` when there is no bearer
/// credential. Errors: several `Authorization` fields, or an empty or non-token68 token.
fn bearer_token(headers: &HeaderList) -> Result<Option<&str>, TokenError> {
    let mut values = headers.get_all("authorization");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::new(
            ErrorCode::MalformedToken,
            "several Authorization fields",
        ));
    }
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim();
    if token.is_empty() || !token.bytes().all(|b| TOKEN68[usize::from(b)]) {
        return Err(TokenError::new(
            ErrorCode::MalformedToken,
            "bearer token is not token68",
        ));
    }
    Ok(Some(token))
}

/// The reply for a refusal: RFC 6750 `WWW-Authenticate` on 401s.
fn reply(e: TokenError) -> LocalReply {
    let reply = LocalReply::new(e.code, e.detail);
    match e.code {
        ErrorCode::MissingCredentials => {
            reply.with_header("www-authenticate", "Bearer realm=\"edgegate\"")
        }
        // Certificates and API keys are not bearer credentials: no Bearer challenge applies.
        ErrorCode::CertificateInvalid
        | ErrorCode::UnknownCertificate
        | ErrorCode::UnknownApiKey
        | ErrorCode::KeyRevoked
        | ErrorCode::KeyExpired => reply,
        ErrorCode::CredentialsUnavailable => reply.with_header("retry-after", "10"),
        code if code.status() == 401 => reply.with_header(
            "www-authenticate",
            format!(
                "Bearer realm=\"edgegate\", error=\"invalid_token\", error_description=\"{}\"",
                code.as_str()
            ),
        ),
        ErrorCode::IdpUnavailable => reply.with_header("retry-after", "10"),
        _ => reply,
    }
}

/// Whether `url` reads the same to every URL parser: no backslash, no control or space
/// characters, and no user info in the authority. (`http://evil.example\@localhost/` is
/// localhost to a naive split but evil.example to the WHATWG parser `fetch` uses.) Checked
/// before the gateway sends keys or tokens to a configured URL.
pub(crate) fn is_unambiguous_url(url: &str) -> bool {
    if url
        .chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return false;
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !authority.contains('@')
}

/// True for `http://` URLs to a loopback host (allowed for local IdPs and tests).
pub(crate) fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    if !is_unambiguous_url(url) {
        return false;
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = crate::route::normalize_host(host);
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_checked_as_fetch_parses_them() {
        for (url, loopback) in [
            ("http://127.0.0.1:8080/jwks", true),
            ("http://localhost/jwks", true),
            ("http://[::1]:9/x", true),
            ("http://evil.example\\@localhost/jwks", false),
            ("http://localhost@evil.example/jwks", false),
            ("http://user@127.0.0.1/jwks", false),
            ("http://127.0.0.1/a b", false),
            ("http://127.0.0.1/a\tb", false),
            ("https://127.0.0.1/jwks", false),
            ("http://127.0.0.1/users/@me", true),
        ] {
            assert_eq!(is_loopback_http(url), loopback, "{url}");
        }
    }

    #[test]
    fn bearer_extraction_table() {
        let h =
            |v: &[&str]| HeaderList::from_pairs(v.iter().map(|x| ("authorization", x.to_string())));
        assert_eq!(bearer_token(&HeaderList::new()), Ok(None));
        assert_eq!(
            bearer_token(&h(&["Bearer abc.def.ghi"])),
            Ok(Some("abc.def.ghi"))
        );
        assert_eq!(bearer_token(&h(&["bearer   abc"])), Ok(Some("abc")));
        assert_eq!(bearer_token(&h(&["Basic dXNlcjpwYXNz"])), Ok(None));
        assert!(bearer_token(&h(&["Bearer "])).is_err());
        assert!(bearer_token(&h(&["Bearer a b"])).is_err());
        assert!(bearer_token(&h(&["Bearer a", "Bearer b"])).is_err());
        for (token, ok) in [
            ("aZ09-._~+/=", true),
            ("abc==", true),
            ("a,b", false),
            ("a\"b", false),
            ("a%2F", false),
            ("a:b", false),
            ("é", false),
            ("a\u{0}b", false),
        ] {
            let list = h(&[&format!("Bearer {token}")]);
            assert_eq!(bearer_token(&list).is_ok(), ok, "{token:?}");
        }
    }

    #[test]
    fn hmac_needs_a_long_enough_key() {
        assert!(verify_hmac(JwsAlgorithm::Hs256, b"short", b"x", &[0; 32]).is_err());
        let key = [7u8; 32];
        let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&key).unwrap();
        m.update(b"input");
        let sig = m.finalize().into_bytes();
        assert_eq!(
            verify_hmac(JwsAlgorithm::Hs256, &key, b"input", &sig),
            Ok(true)
        );
        assert_eq!(
            verify_hmac(JwsAlgorithm::Hs256, &key, b"other", &sig),
            Ok(false)
        );
    }

    #[test]
    fn loopback_http_table() {
        for (u, ok) in [
            ("http://127.0.0.1:9000/jwks", true),
            ("http://localhost/x", true),
            ("http://[::1]:1/", true),
            ("http://idp.example.com/jwks", false),
            ("https://127.0.0.1/", false),
        ] {
            assert_eq!(is_loopback_http(u), ok, "{u}");
        }
    }
}

//! Compiled authentication config: identity providers, route policies, identity headers.

use super::alg::AlgorithmSet;
use super::token::ClaimRules;

/// Where an identity provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL.
    Jwks(String),
    /// An OIDC discovery document URL (its `jwks_uri` is used).
    Discovery(String),
    /// The name of a secret holding an HMAC key.
    HmacSecret(String),
    /// No keys: the provider only introspects opaque tokens.
    None,
}

/// An RFC 7662 introspection endpoint and the gateway's client credentials there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionEndpoint {
    /// The endpoint URL.
    pub url: String,
    /// The gateway's client id (HTTP Basic), if any.
    pub client_id: Option<String>,
    /// The name of the secret with the client secret.
    pub client_secret: Option<String>,
    /// How long a result is reused (ms), never beyond the token's `exp`.
    pub cache_ttl_ms: u64,
}

/// A validated identity provider. Times in ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    /// Its config name.
    pub name: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    /// Where its keys come from.
    pub source: KeySource,
    /// Keys are trusted at least this long after a fetch.
    pub min_ttl_ms: u64,
    /// … and at most this long.
    pub max_ttl_ms: u64,
    /// Expired keys keep serving this long while the IdP is unreachable.
    pub max_stale_ms: u64,
    /// At most one fetch per this interval.
    pub refetch_interval_ms: u64,
    /// Fetch timeout.
    pub timeout_ms: u64,
    /// Its introspection endpoint, if it has one.
    pub introspection: Option<IntrospectionEndpoint>,
    /// [`IdentityProvider::store_id`], computed once.
    pub(crate) store_id: String,
}

impl IdentityProvider {
    /// The isolate key store's id for this provider's keys: issuer and source, so a config
    /// reload that keeps both keeps the fetched keys. Computed when the config compiles (it is
    /// compared on every cached-token hit).
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The store id for an issuer and key source.
    pub(crate) fn make_store_id(issuer: &str, source: &KeySource) -> String {
        let source = match source {
            KeySource::Jwks(u) => format!("jwks {u}"),
            KeySource::Discovery(u) => format!("discovery {u}"),
            KeySource::HmacSecret(n) => format!("secret {n}"),
            KeySource::None => "no keys".to_string(),
        };
        format!("{issuer} | {source}")
    }
}

/// What a route requires of a JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// Indices of the accepted identity providers in the compiled config.
    pub providers: Vec<usize>,
    /// Accepted algorithms.
    pub algorithms: AlgorithmSet,
    /// Claim checks.
    pub claims: ClaimRules,
    /// Largest token accepted.
    pub max_token_bytes: u64,
}

/// What a route requires of an opaque token's introspection result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionRules {
    /// Index of the identity provider asked.
    pub provider: usize,
    /// Claim checks on the response (`exp` optional: `active` is authoritative).
    pub claims: ClaimRules,
}

/// An accepted client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateMatch {
    /// By SHA-256 fingerprint (lower-case hex, no separators).
    Fingerprint(String),
    /// By subject DN (RFC 2253).
    SubjectDn(String),
}

/// Which client certificates a route accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsRules {
    /// Accepted certificates and their consumers.
    pub certificates: Vec<(CertificateMatch, String)>,
}

/// An authentication method, in the order a route lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT, or an opaque token for introspection (one bearer token either way).
    Bearer,
    /// A verified client certificate.
    Mtls,
    /// An API key.
    ApiKey,
    /// No credential.
    Anonymous,
}

/// A route's authentication policy. The first method in `methods` whose credential the
/// request presents decides; a presented credential that fails is never skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// The accepted methods, in order.
    pub methods: Vec<AuthMethod>,
    /// Requests without credentials pass as anonymous.
    pub anonymous: bool,
    /// JWT rules when JWTs are accepted.
    pub jwt: Option<JwtRules>,
    /// Introspection rules when opaque tokens are accepted.
    pub introspection: Option<IntrospectionRules>,
    /// Client-certificate rules when mTLS is accepted.
    pub mtls: Option<MtlsRules>,
    /// Where API keys are read, when they are accepted.
    pub api_key: Option<ApiKeyRules>,
}

/// Where a route reads API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRules {
    /// The header (lower-case).
    pub header: String,
    /// The query parameter, if keys are also accepted there.
    pub query: Option<String>,
}

impl AuthPolicy {
    /// True if the policy accepts client certificates (platforms without them reject it).
    pub fn uses_mtls(&self) -> bool {
        self.mtls.is_some()
    }
}

/// Header names that carry the identity to backends (`None`: not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// `sub`.
    pub subject: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `azp` / `client_id`.
    pub application: Option<String>,
    /// Scopes, space-separated.
    pub scopes: Option<String>,
    /// The authentication method.
    pub method: Option<String>,
    /// The authorizing subscription's id.
    pub subscription: Option<String>,
}

impl IdentityHeaders {
    /// Every configured name (lower-case).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.subject,
            &self.issuer,
            &self.application,
            &self.scopes,
            &self.method,
            &self.subscription,
        ]
        .into_iter()
        .filter_map(|n| n.as_deref())
    }
}

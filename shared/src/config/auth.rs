//! Compiling the authentication parts of a config: identity providers, `auth` policies and
//! identity headers. Every problem is reported with its JSON path.

use super::compile::{is_name, is_token, Ctx};
use super::spec::{
    AuthMethodSpec, AuthPolicySpec, IdentityHeadersSpec, IdentityProviderSpec, MintTokenSpec,
};
use crate::auth::{
    AlgorithmSet, ApiKeyRules, AuthMethod, AuthPolicy, CertificateMatch, ClaimRules,
    IdentityHeaders, IdentityProvider, IntrospectionEndpoint, IntrospectionRules, JwsAlgorithm,
    JwtRules, KeyFamily, KeySource, MintAlgorithm, MintToken, MtlsRules, MAX_LEEWAY_S,
};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Validates the identity providers; returns them (in name order) and their indices by name.
pub(super) fn identity_providers(
    specs: &BTreeMap<String, IdentityProviderSpec>,
    cx: &mut Ctx,
) -> (Vec<IdentityProvider>, HashMap<String, usize>) {
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for (name, spec) in specs {
        let path = format!("$.identity_providers.{name}");
        if !is_name(name) {
            cx.err(
                &path,
                "provider names are 1-64 characters of letters, digits, '.', '_', '-'",
            );
        }
        if spec.issuer.is_empty() {
            cx.err(format!("{path}.issuer"), "the issuer must not be empty");
        }
        let source = match (&spec.jwks_uri, &spec.discovery_url, &spec.hmac_secret) {
            (Some(u), None, None) => {
                check_url(u, &format!("{path}.jwks_uri"), cx);
                KeySource::Jwks(u.clone())
            }
            (None, Some(u), None) => {
                check_url(u, &format!("{path}.discovery_url"), cx);
                KeySource::Discovery(u.clone())
            }
            (None, None, Some(n)) => {
                check_secret_name(n, &format!("{path}.hmac_secret"), cx);
                KeySource::HmacSecret(n.clone())
            }
            (None, None, None) => {
                if spec.introspection_endpoint.is_none() {
                    cx.err(&path, "set one of `jwks_uri`, `discovery_url`, `hmac_secret`, or an `introspection_endpoint`");
                }
                KeySource::None
            }
            _ => {
                cx.err(
                    &path,
                    "set at most one of `jwks_uri`, `discovery_url`, `hmac_secret`",
                );
                KeySource::None
            }
        };
        let introspection = spec.introspection_endpoint.as_ref().map(|url| {
            check_url(url, &format!("{path}.introspection_endpoint"), cx);
            if let Some(n) = &spec.client_secret {
                check_secret_name(n, &format!("{path}.client_secret"), cx);
                if spec.client_id.is_none() {
                    cx.err(
                        format!("{path}.client_secret"),
                        "a client secret needs a `client_id`",
                    );
                }
            }
            IntrospectionEndpoint {
                url: url.clone(),
                client_id: spec.client_id.clone(),
                client_secret: spec.client_secret.clone(),
                cache_ttl_ms: spec.introspection_cache_ttl_s * 1000,
            }
        });
        if spec.introspection_endpoint.is_none()
            && (spec.client_id.is_some() || spec.client_secret.is_some())
        {
            cx.err(
                &path,
                "`client_id` / `client_secret` are for an `introspection_endpoint`",
            );
        }
        let in_range = |v: u64, lo: u64, hi: u64, field: &str, cx: &mut Ctx| {
            if !(lo..=hi).contains(&v) {
                cx.err(format!("{path}.{field}"), format!("must be {lo} to {hi}"));
            }
        };
        in_range(spec.jwks_min_ttl_s, 0, 604_800, "jwks_min_ttl_s", cx);
        in_range(spec.jwks_max_ttl_s, 1, 604_800, "jwks_max_ttl_s", cx);
        in_range(spec.max_stale_s, 0, 2_592_000, "max_stale_s", cx);
        in_range(spec.refetch_interval_s, 1, 3_600, "refetch_interval_s", cx);
        in_range(spec.timeout_ms, 1, 60_000, "timeout_ms", cx);
        in_range(
            spec.introspection_cache_ttl_s,
            1,
            3_600,
            "introspection_cache_ttl_s",
            cx,
        );
        if spec.jwks_min_ttl_s > spec.jwks_max_ttl_s {
            cx.err(
                format!("{path}.jwks_min_ttl_s"),
                "must not exceed jwks_max_ttl_s",
            );
        }
        index.insert(name.clone(), out.len());
        out.push(IdentityProvider {
            store_id: IdentityProvider::make_store_id(&spec.issuer, &source),
            name: name.clone(),
            issuer: spec.issuer.clone(),
            source,
            min_ttl_ms: spec.jwks_min_ttl_s * 1000,
            max_ttl_ms: spec.jwks_max_ttl_s * 1000,
            max_stale_ms: spec.max_stale_s * 1000,
            refetch_interval_ms: spec.refetch_interval_s * 1000,
            timeout_ms: spec.timeout_ms,
            introspection,
        });
    }
    (out, index)
}

/// The prefix of the gateway's own deployment settings and secrets (`EDGEGATE_ADMIN_TOKEN`,
/// `EDGEGATE_REGISTRY_TOKEN`, …; lower case on Spin). A config may not name them: it would
/// send them to a URL the config chooses (an introspection endpoint's Basic credentials).
const RESERVED_SECRET_PREFIX: &str = "EDGEGATE_";

fn check_secret_name(name: &str, path: &str, cx: &mut Ctx) {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        cx.err(path, "a secret name is letters, digits and '_'");
    } else if name
        .to_ascii_uppercase()
        .starts_with(RESERVED_SECRET_PREFIX)
    {
        cx.err(
            path,
            format!(
                "names starting with {RESERVED_SECRET_PREFIX} are the gateway's own settings \
                 and secrets (admin and Registry tokens); use a secret of its own"
            ),
        );
    }
}

/// Key URLs must be https (keys fetched in clear could be swapped), except to loopback hosts.
fn check_url(url: &str, path: &str, cx: &mut Ctx) {
    let ok = (url.starts_with("https://") && url.len() > "https://".len())
        || crate::auth::is_loopback_http(url);
    if !ok {
        cx.err(path, "must be an https URL (http only to a loopback host)");
    } else if !crate::auth::is_unambiguous_url(url) {
        cx.err(
            path,
            "no user info, backslashes, spaces or control characters (URL parsers disagree on them)",
        );
    }
}

/// Validates one `auth` section.
pub(super) fn auth_policy(
    spec: &AuthPolicySpec,
    path: &str,
    providers: &[IdentityProvider],
    index: &HashMap<String, usize>,
    cx: &mut Ctx,
) -> Rc<AuthPolicy> {
    if spec.accept.is_empty() {
        cx.err(
            format!("{path}.accept"),
            "list at least one method (or `anonymous`)",
        );
    }
    for (i, m) in spec.accept.iter().enumerate() {
        if spec.accept[..i].contains(m) {
            cx.err(format!("{path}.accept[{i}]"), "listed twice");
        }
    }
    let accepts_jwt = spec.accept.contains(&AuthMethodSpec::Jwt);
    let jwt = match (&spec.jwt, accepts_jwt) {
        (Some(j), true) => {
            let jp = format!("{path}.jwt");
            let mut algorithms = AlgorithmSet::default();
            for (i, a) in j.algorithms.iter().enumerate() {
                match JwsAlgorithm::parse(a) {
                    Some(alg) => algorithms.insert(alg),
                    None => cx.err(
                        format!("{jp}.algorithms[{i}]"),
                        format!("{a:?} is not a supported algorithm (`none` never is)"),
                    ),
                }
            }
            if j.algorithms.is_empty() {
                cx.err(format!("{jp}.algorithms"), "list at least one algorithm");
            }
            if j.providers.is_empty() {
                cx.err(
                    format!("{jp}.providers"),
                    "list at least one identity provider",
                );
            }
            let mut ids = Vec::new();
            for (i, name) in j.providers.iter().enumerate() {
                match index.get(name) {
                    None => cx.err(
                        format!("{jp}.providers[{i}]"),
                        format!("no identity provider named {name:?}"),
                    ),
                    Some(&idx) => {
                        let hmac = matches!(providers[idx].source, KeySource::HmacSecret(_));
                        if providers[idx].source == KeySource::None {
                            cx.err(
                                format!("{jp}.providers[{i}]"),
                                format!("provider {name:?} has no keys (only introspection)"),
                            );
                        }
                        let usable = if hmac {
                            algorithms.any_of_family(KeyFamily::Hmac)
                        } else {
                            [
                                KeyFamily::Rsa,
                                KeyFamily::P256,
                                KeyFamily::P384,
                                KeyFamily::Ed25519,
                            ]
                            .iter()
                            .any(|f| algorithms.any_of_family(*f))
                        };
                        if !usable {
                            cx.err(
                                format!("{jp}.providers[{i}]"),
                                if hmac {
                                    "an hmac_secret provider needs an HS* algorithm in `algorithms`"
                                } else {
                                    "a JWKS provider needs an RS*, PS*, ES* or EdDSA algorithm in `algorithms`"
                                },
                            );
                        }
                        ids.push(idx);
                    }
                }
            }
            if j.leeway_s > MAX_LEEWAY_S as u64 {
                cx.err(format!("{jp}.leeway_s"), format!("at most {MAX_LEEWAY_S}"));
            }
            if !(256..=65_536).contains(&j.max_token_bytes) {
                cx.err(format!("{jp}.max_token_bytes"), "must be 256 to 65536");
            }
            for (i, c) in j.required_claims.iter().enumerate() {
                if c.is_empty() {
                    cx.err(format!("{jp}.required_claims[{i}]"), "empty claim name");
                }
            }
            Some(JwtRules {
                providers: ids,
                algorithms,
                claims: ClaimRules {
                    audiences: j.audiences.clone(),
                    leeway_s: j.leeway_s.min(MAX_LEEWAY_S as u64) as i64,
                    required: j.required_claims.clone(),
                    require_exp: true,
                },
                max_token_bytes: j.max_token_bytes,
            })
        }
        (None, true) => {
            cx.err(path, "`jwt` is accepted, so a `jwt` section is required");
            None
        }
        (Some(_), false) => {
            cx.err(
                format!("{path}.jwt"),
                "`jwt` rules are set but `jwt` is not in `accept`",
            );
            None
        }
        (None, false) => None,
    };
    let accepts_introspection = spec.accept.contains(&AuthMethodSpec::Introspection);
    let introspection = match (&spec.introspection, accepts_introspection) {
        (Some(i), true) => {
            let ip = format!("{path}.introspection");
            match index.get(&i.provider) {
                None => {
                    cx.err(
                        format!("{ip}.provider"),
                        format!("no identity provider named {:?}", i.provider),
                    );
                    None
                }
                Some(&idx) if providers[idx].introspection.is_none() => {
                    cx.err(
                        format!("{ip}.provider"),
                        format!("provider {:?} has no introspection_endpoint", i.provider),
                    );
                    None
                }
                Some(&idx) => Some(IntrospectionRules {
                    provider: idx,
                    claims: ClaimRules {
                        audiences: i.audiences.clone(),
                        leeway_s: 60,
                        required: i.required_claims.clone(),
                        require_exp: false,
                    },
                }),
            }
        }
        (None, true) => {
            cx.err(
                path,
                "`introspection` is accepted, so an `introspection` section is required",
            );
            None
        }
        (Some(_), false) => {
            cx.err(
                format!("{path}.introspection"),
                "`introspection` rules are set but `introspection` is not in `accept`",
            );
            None
        }
        (None, false) => None,
    };
    let mtls = match (&spec.mtls, spec.accept.contains(&AuthMethodSpec::Mtls)) {
        (Some(m), true) => {
            let mp = format!("{path}.mtls");
            if m.certificates.is_empty() {
                cx.err(
                    format!("{mp}.certificates"),
                    "list at least one certificate",
                );
            }
            let mut certificates = Vec::new();
            for (i, c) in m.certificates.iter().enumerate() {
                let cp = format!("{mp}.certificates[{i}]");
                if c.consumer.is_empty() {
                    cx.err(format!("{cp}.consumer"), "the consumer must not be empty");
                }
                let matcher = match (&c.fingerprint_sha256, &c.subject_dn) {
                    (Some(f), None) => {
                        let hex: String = f
                            .chars()
                            .filter(|c| *c != ':')
                            .collect::<String>()
                            .to_ascii_lowercase();
                        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            cx.err(
                                format!("{cp}.fingerprint_sha256"),
                                "a SHA-256 fingerprint is 64 hex digits",
                            );
                        }
                        CertificateMatch::Fingerprint(hex)
                    }
                    (None, Some(dn)) if !dn.is_empty() => CertificateMatch::SubjectDn(dn.clone()),
                    _ => {
                        cx.err(&cp, "set exactly one of `fingerprint_sha256`, `subject_dn`");
                        continue;
                    }
                };
                certificates.push((matcher, c.consumer.clone()));
            }
            cx.mtls_paths.push(format!("{path}.accept"));
            Some(MtlsRules { certificates })
        }
        (None, true) => {
            cx.err(path, "`mtls` is accepted, so an `mtls` section is required");
            None
        }
        (Some(_), false) => {
            cx.err(
                format!("{path}.mtls"),
                "`mtls` rules are set but `mtls` is not in `accept`",
            );
            None
        }
        (None, false) => None,
    };
    let api_key = match (&spec.api_key, spec.accept.contains(&AuthMethodSpec::ApiKey)) {
        (section, true) => {
            let kp = format!("{path}.api_key");
            let header = section.as_ref().map_or_else(
                || "x-api-key".to_string(),
                |k| k.header.to_ascii_lowercase(),
            );
            if !is_token(&header) {
                cx.err(
                    format!("{kp}.header"),
                    format!("{header:?} is not a header name"),
                );
            }
            let query = section.as_ref().and_then(|k| k.query.clone());
            if query.as_deref() == Some("") {
                cx.err(format!("{kp}.query"), "an empty parameter name");
            }
            Some(ApiKeyRules { header, query })
        }
        (Some(_), false) => {
            cx.err(
                format!("{path}.api_key"),
                "`api_key` is set but `api_key` is not in `accept`",
            );
            None
        }
        (None, false) => None,
    };
    let mut methods = Vec::new();
    for m in &spec.accept {
        let method = match m {
            AuthMethodSpec::Jwt | AuthMethodSpec::Introspection => AuthMethod::Bearer,
            AuthMethodSpec::Mtls => AuthMethod::Mtls,
            AuthMethodSpec::ApiKey => AuthMethod::ApiKey,
            AuthMethodSpec::Anonymous => AuthMethod::Anonymous,
        };
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Rc::new(AuthPolicy {
        methods,
        anonymous: spec.accept.contains(&AuthMethodSpec::Anonymous),
        jwt,
        introspection,
        mtls,
        api_key,
    })
}

/// Validates the identity header names (empty = not sent).
pub(super) fn identity_headers(spec: &IdentityHeadersSpec, cx: &mut Ctx) -> IdentityHeaders {
    let mut one = |v: &str, field: &str| -> Option<String> {
        if v.is_empty() {
            return None;
        }
        if !is_token(v) {
            cx.err(
                format!("$.gateway.identity_headers.{field}"),
                format!("{v:?} is not a header name"),
            );
            return None;
        }
        Some(v.to_ascii_lowercase())
    };
    IdentityHeaders {
        subject: one(&spec.subject, "subject"),
        issuer: one(&spec.issuer, "issuer"),
        application: one(&spec.application, "application"),
        scopes: one(&spec.scopes, "scopes"),
        method: one(&spec.method, "method"),
        subscription: one(&spec.subscription, "subscription"),
    }
}

/// Validates a `mint_token` section; `api` is the API name (the default audience).
pub(super) fn mint_token(
    spec: &MintTokenSpec,
    path: &str,
    api: &str,
    cx: &mut Ctx,
) -> Rc<MintToken> {
    let algorithm = match spec.algorithm.as_str() {
        "EdDSA" => MintAlgorithm::EdDsa,
        "HS256" => MintAlgorithm::Hs256,
        other => {
            cx.err(
                format!("{path}.algorithm"),
                format!("{other:?}: minted tokens are EdDSA or HS256"),
            );
            MintAlgorithm::Hs256
        }
    };
    check_secret_name(&spec.key_secret, &format!("{path}.key_secret"), cx);
    if !(1..=3600).contains(&spec.ttl_s) {
        cx.err(format!("{path}.ttl_s"), "must be 1 to 3600");
    }
    if !is_token(&spec.header) {
        cx.err(
            format!("{path}.header"),
            format!("{:?} is not a header name", spec.header),
        );
    }
    if spec.issuer.is_empty() {
        cx.err(format!("{path}.issuer"), "must not be empty");
    }
    Rc::new(MintToken {
        algorithm,
        key_secret: spec.key_secret.clone(),
        key_id: spec.key_id.clone(),
        issuer: spec.issuer.clone(),
        audience: spec.audience.clone().unwrap_or_else(|| api.to_string()),
        ttl_s: spec.ttl_s,
        header: spec.header.to_ascii_lowercase(),
    })
}

//! The Registry snapshot (issue 4) in wasm: the decode of a generated snapshot and the
//! per-request lookups against it, as plain `extern "C"` exports for
//! `bench/load/snapshot-wasm.mjs` (node, V8) to time. No wasm-bindgen and no imports, so the
//! module instantiates with an empty import object and every measured call is one JS → wasm
//! call with numbers in and out.
//!
//! Two ways to use a module instance:
//! - bench: [`prepare`] (generate + encode, probe keys), then [`decode_once`], [`memory_bytes`]
//!   and the lookup loops ([`lookups`], [`lookups_miss`], [`lookups_credential`],
//!   [`lookups_application`]), with the same probe keys as the native criterion bench
//!   (`bench/benches/snapshot.rs`);
//! - fresh instance, like an isolate that reads the snapshot from KV: [`input_alloc`], the
//!   encoded bytes copied in by JS (from another instance's [`bytes_ptr`] / [`bytes_len`]),
//!   then [`decode_once`]; its linear memory then holds only the bytes and the snapshot;
//! - authorization decision: [`authz_prepare`] (the setup of `bench/benches/authz.rs`: up to
//!   1,024 callers (721 with seed 42) and the 5-rule policy over a generated snapshot, the
//!   20-policy Cedar set and its caller), then the decision loops [`authz_rules`] and
//!   [`authz_abac`].
//!
//! Built with the workspace's release profile (`opt-level = "s"`, fat LTO; Cedar's crates at
//! `opt-level = "z"`), as the worker is. Cedar adds no imports: nothing it links asks the host
//! for randomness or time (std's `HashMap` seeding makes no host call on
//! wasm32-unknown-unknown), and the node script refuses a module that has imports.

use edgegate_core::auth::{Principal, TokenClaims};
use edgegate_core::authz::cedar::{compile_policies, AbacRule};
use edgegate_core::authz::{
    authorize, AuthzPolicy, AuthzRequest, ClaimPath, EnvironmentRule, IpRule, RoleRule, RuleMode,
    ScopeRule, SubscriptionRule,
};
use edgegate_core::headers::HeaderList;
use edgegate_core::snapshot::{
    decode, encode, generate, CredentialKind, Snapshot, SubscriptionStatus,
};
use std::cell::RefCell;
use std::hint::black_box;
use std::net::IpAddr;
use std::rc::Rc;

/// Probe keys cycled by the lookup loops: about 1,024 of each, spread over the document.
#[derive(Default)]
struct Probes {
    /// (application id, API, environment) of subscriptions: `subscriptions_for` hits.
    subscriptions: Vec<(String, String, String)>,
    /// (kind, hex key) of credentials: `credential` hits.
    credentials: Vec<(CredentialKind, String)>,
}

#[derive(Default)]
struct State {
    /// The encoded snapshot that [`decode_once`] decodes.
    bytes: Vec<u8>,
    probes: Probes,
    snapshot: Option<Snapshot>,
    /// What the decision loops run on ([`authz_prepare`]); independent of the above.
    authz: Option<Box<Authz>>,
}

thread_local! {
    // wasm32-unknown-unknown without atomics has one thread: this is a plain static.
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Every `n / 1024`-th element (at least every one): the native bench's probe spacing.
fn probe_step(n: usize) -> usize {
    (n / 1024).max(1)
}

/// Generates a snapshot document of `n` subscriptions with `seed` ([`generate`]), encodes it
/// and keeps the encoded bytes and the probe keys (the document itself is dropped). Drops any
/// decoded snapshot. Returns the encoded length in bytes.
#[no_mangle]
pub extern "C" fn prepare(n: u32, seed: u32) -> u32 {
    let doc = generate(n as usize, u64::from(seed));
    let bytes = encode(&doc);
    let probes = Probes {
        subscriptions: doc
            .subscriptions
            .iter()
            .step_by(probe_step(doc.subscriptions.len()))
            .map(|s| {
                (
                    s.application_id.clone(),
                    s.api.clone(),
                    s.environment.clone(),
                )
            })
            .collect(),
        credentials: doc
            .credentials
            .iter()
            .step_by(probe_step(doc.credentials.len()))
            .map(|c| (c.kind, c.key.clone()))
            .collect(),
    };
    drop(doc);
    let len = len_u32(bytes.len());
    STATE.with_borrow_mut(|st| {
        st.snapshot = None;
        st.bytes = bytes;
        st.probes = probes;
    });
    len
}

/// Address in linear memory of the encoded bytes kept by [`prepare`] (or [`input_alloc`]).
#[no_mangle]
pub extern "C" fn bytes_ptr() -> u32 {
    STATE.with_borrow(|st| st.bytes.as_ptr() as u32)
}

/// Length of the encoded bytes kept by [`prepare`] (or [`input_alloc`]).
#[no_mangle]
pub extern "C" fn bytes_len() -> u32 {
    STATE.with_borrow(|st| len_u32(st.bytes.len()))
}

/// Replaces the kept bytes by `len` zero bytes for JS to fill (e.g. with another instance's
/// encoded snapshot) and returns their address. Drops any decoded snapshot; keeps no probes.
#[no_mangle]
pub extern "C" fn input_alloc(len: u32) -> u32 {
    STATE.with_borrow_mut(|st| {
        st.snapshot = None;
        st.probes = Probes::default();
        st.bytes = vec![0; len as usize];
        st.bytes.as_ptr() as u32
    })
}

/// Drops the previous snapshot, then decodes the kept bytes ([`decode`]) and keeps the result.
/// Returns 1 on success, 0 if the bytes do not decode (nothing is kept then).
#[no_mangle]
pub extern "C" fn decode_once() -> u32 {
    STATE.with_borrow_mut(|st| {
        st.snapshot = None;
        st.snapshot = decode(black_box(&st.bytes)).ok();
        u32::from(st.snapshot.is_some())
    })
}

/// [`Snapshot::memory_bytes`] of the decoded snapshot (heap bytes it holds); 0 if none.
#[no_mangle]
pub extern "C" fn memory_bytes() -> u32 {
    STATE.with_borrow(|st| {
        st.snapshot
            .as_ref()
            .map_or(0, |s| len_u32(s.memory_bytes()))
    })
}

/// Subscriptions in the decoded snapshot (0 if none): to check it is the one prepared.
#[no_mangle]
pub extern "C" fn subscription_count() -> u32 {
    STATE.with_borrow(|st| {
        st.snapshot
            .as_ref()
            .map_or(0, |s| len_u32(s.len().subscriptions))
    })
}

/// `iterations` hits of [`Snapshot::subscriptions_for`], cycling over the probes, each
/// counting the subscriptions that cover version `v2` (as the native bench does). Returns the
/// sum of the counts, or `u32::MAX` if nothing is decoded or there are no probes.
#[no_mangle]
pub extern "C" fn lookups(iterations: u32) -> u32 {
    with_snapshot(|snap, probes| {
        let keys = &probes.subscriptions;
        let mut sum = 0u32;
        for i in 0..iterations as usize {
            let (app, api, env) = &keys[i % keys.len()];
            let n = black_box(snap)
                .subscriptions_for(app, api, env)
                .filter(|s| s.covers_version("v2"))
                .count();
            sum = sum.wrapping_add(len_u32(n));
        }
        (!keys.is_empty()).then_some(sum)
    })
}

/// `iterations` misses of [`Snapshot::subscriptions_for`]: the first probe's application with
/// an API that does not exist. Returns the number of subscriptions found (0), or `u32::MAX` if
/// nothing is decoded or there are no probes.
#[no_mangle]
pub extern "C" fn lookups_miss(iterations: u32) -> u32 {
    with_snapshot(|snap, probes| {
        let (app, _, _) = probes.subscriptions.first()?;
        let mut sum = 0u32;
        for _ in 0..iterations {
            let n = black_box(snap)
                .subscriptions_for(black_box(app), "no-such-api", "production")
                .count();
            sum = sum.wrapping_add(len_u32(n));
        }
        Some(sum)
    })
}

/// `iterations` hits of [`Snapshot::credential`] (hex key → SHA-256 digest → probe), cycling
/// over the credential probes. Returns the number found, or `u32::MAX` if nothing is decoded or
/// there are no probes.
#[no_mangle]
pub extern "C" fn lookups_credential(iterations: u32) -> u32 {
    with_snapshot(|snap, probes| {
        let keys = &probes.credentials;
        let mut found = 0u32;
        for i in 0..iterations as usize {
            let (kind, key) = &keys[i % keys.len()];
            let hit = black_box(snap).credential(*kind, key).map(|c| c.status());
            found = found.wrapping_add(u32::from(black_box(hit).is_some()));
        }
        (!keys.is_empty()).then_some(found)
    })
}

/// `iterations` hits of [`Snapshot::application`] with the first probe's application id, each
/// adding the length of its name. Returns the sum, or `u32::MAX` if nothing is decoded or
/// there are no probes.
#[no_mangle]
pub extern "C" fn lookups_application(iterations: u32) -> u32 {
    with_snapshot(|snap, probes| {
        let (app, _, _) = probes.subscriptions.first()?;
        let mut sum = 0u32;
        for _ in 0..iterations {
            let n = black_box(snap)
                .application(black_box(app))
                .map_or(0, |a| a.name().len());
            sum = sum.wrapping_add(len_u32(n));
        }
        Some(sum)
    })
}

/// A caller of the 5-rule bench: its principal and the endpoint it calls.
struct Caller {
    principal: Principal,
    api: String,
    environment: String,
    version: String,
}

/// The fixtures of `bench/benches/authz.rs`.
struct Authz {
    /// The decoded snapshot the 5-rule policy checks subscriptions against.
    snapshot: Snapshot,
    /// Callers with an active subscription, cycled by [`authz_rules`].
    callers: Vec<Caller>,
    /// IP lists, subscription, environment isolation, scopes (shadow) and roles.
    rules: AuthzPolicy,
    /// The 20 Cedar policies (16 permits, 4 forbids) and nothing else.
    abac: AuthzPolicy,
    /// The caller the Cedar policies see (roles `viewer`, claim `tenant` = `t1`).
    abac_principal: Principal,
    /// `x-tenant: t1`, exposed to the policies.
    abac_headers: HeaderList,
    /// No headers (the 5-rule bench).
    no_headers: HeaderList,
    /// 203.0.113.7: not in the 5-rule policy's deny list, nor in the Cedar `office-net` range.
    client_ip: Option<IpAddr>,
}

fn path(p: &str) -> Result<ClaimPath, ()> {
    ClaimPath::parse(p).map_err(drop)
}

/// The 5-rule request of `caller` (as the native bench builds it).
fn rules_request<'a>(authz: &'a Authz, snap: &'a Snapshot, caller: &'a Caller) -> AuthzRequest<'a> {
    AuthzRequest {
        principal: Some(&caller.principal),
        api: &caller.api,
        version: Some(&caller.version),
        environment: &caller.environment,
        method: "GET",
        route: "list",
        headers: &authz.no_headers,
        country: Some("DE"),
        client_ip: authz.client_ip,
        now_s: 1_700_000_000,
        snapshot: Some(snap),
    }
}

/// The Cedar request (as the native bench builds it): GET api7/list from DE.
fn abac_request(authz: &Authz) -> AuthzRequest<'_> {
    AuthzRequest {
        principal: Some(&authz.abac_principal),
        api: "api7",
        version: Some("v1"),
        environment: "production",
        method: "GET",
        route: "list",
        headers: &authz.abac_headers,
        country: Some("DE"),
        client_ip: authz.client_ip,
        now_s: 1_700_000_000,
        snapshot: None,
    }
}

/// Twenty Cedar policies (16 permits, one per API, and 4 forbids): `policies_20` of
/// `bench/benches/authz.rs`, verbatim.
fn policies_20() -> String {
    let mut out = String::new();
    for i in 0..16 {
        out.push_str(&format!(
            "@id(\"read-api{i}\")\npermit(principal, action in [Edgegate::Action::\"GET\", \
             Edgegate::Action::\"HEAD\"], resource) when {{ resource.api == \"api{i}\" && \
             principal.roles.contains(\"viewer\") && context.time > 0 }};\n"
        ));
    }
    out.push_str(
        "@id(\"embargo\")\nforbid(principal, action, resource) when { context has country && \
         [\"KP\", \"IR\"].contains(context.country) };\n\
         @id(\"pii\")\nforbid(principal, action, resource) when { resource.classification == \"pii\" \
         && !principal.scopes.contains(\"pii:read\") };\n\
         @id(\"office-net\")\nforbid(principal, action, resource) when { resource.environment == \
         \"internal\" && !(context has ip && context.ip.isInRange(ip(\"10.0.0.0/8\"))) };\n\
         @id(\"tenant\")\nforbid(principal, action, resource) when { context.headers has \"x-tenant\" \
         && principal.claims has \"tenant\" && context.headers[\"x-tenant\"] != principal.claims[\"tenant\"] };\n",
    );
    out
}

/// Builds [`Authz`] from a generated snapshot of `n` subscriptions with `seed` and checks it as
/// the native bench does (the Cedar caller allowed from DE, denied from KP). Returns it and how
/// many of the callers the 5-rule policy allows; Err if a check fails.
fn build_authz(n: usize, seed: u64) -> Result<(Authz, usize), ()> {
    let doc = generate(n, seed);
    let snapshot = decode(&encode(&doc)).map_err(drop)?;
    // Callers with an active subscription (no window, no IP lists); a few are denied all the
    // same (suspended consumer), as in real traffic. The claim values are built with `.into()`
    // rather than `serde_json::json!`, so this crate needs no serde_json dependency of its own.
    let callers: Vec<Caller> = doc
        .subscriptions
        .iter()
        .filter(|s| {
            s.status == SubscriptionStatus::Active
                && s.valid_from.is_none()
                && s.valid_until.is_none()
                && s.ip_allow.is_empty()
                && s.ip_deny.is_empty()
        })
        .step_by(50)
        .take(1024)
        .map(|s| {
            let mut claims = TokenClaims {
                issuer: Some("https://idp.example".into()),
                subject: Some("alice".into()),
                audiences: vec!["orders".into()],
                expires: None,
                not_before: None,
                issued_at: None,
                application: Some(s.application_id.clone()),
                scopes: vec!["read".into(), "orders:read".into()],
                all: Default::default(),
            };
            claims
                .all
                .insert("roles".into(), vec!["viewer", "editor"].into());
            let version = if s.versions[0] == "*" {
                "v1"
            } else {
                &s.versions[0]
            };
            Caller {
                principal: Principal {
                    method: "jwt",
                    claims: Some(Rc::new(claims)),
                    environment: Some(s.environment.clone()),
                },
                api: s.api.clone(),
                environment: s.environment.clone(),
                version: version.to_string(),
            }
        })
        .collect();
    drop(doc);
    if callers.is_empty() {
        return Err(());
    }
    let rules = AuthzPolicy {
        ip: Some(IpRule {
            mode: RuleMode::Enforce,
            allow: Vec::new(),
            deny: vec!["198.51.100.0/24".parse().map_err(drop)?],
        }),
        subscription: Some(SubscriptionRule {
            mode: RuleMode::Enforce,
        }),
        environment: Some(EnvironmentRule {
            mode: RuleMode::Enforce,
            claim: path("env")?,
        }),
        scopes: Some(ScopeRule {
            mode: RuleMode::Shadow,
            required: vec!["read".into()],
            claim: None,
        }),
        roles: Some(RoleRule {
            mode: RuleMode::Enforce,
            claim: path("roles")?,
            read: vec!["viewer".into()],
            write: vec!["editor".into()],
            admin: Vec::new(),
            class: None,
        }),
        hide_with_404: false,
        classification: "internal".into(),
        abac: None,
    };

    let claims = vec![path("tenant")?];
    let headers_exposed = vec!["x-tenant".to_string()];
    let policies = compile_policies(&policies_20(), &claims, &headers_exposed).map_err(drop)?;
    if policies.policies().count() != 20 {
        return Err(());
    }
    let abac = AuthzPolicy {
        abac: Some(AbacRule {
            mode: RuleMode::Enforce,
            policies,
            claims,
            headers: headers_exposed,
            roles_claim: path("roles")?,
        }),
        classification: "internal".into(),
        ..AuthzPolicy::default()
    };
    let mut claims = TokenClaims {
        issuer: Some("https://idp.example".into()),
        subject: Some("alice".into()),
        audiences: vec![],
        expires: None,
        not_before: None,
        issued_at: None,
        application: Some("app1".into()),
        scopes: vec!["read".into()],
        all: Default::default(),
    };
    claims.all.insert("roles".into(), vec!["viewer"].into());
    claims.all.insert("tenant".into(), "t1".into());
    let abac_principal = Principal {
        method: "jwt",
        claims: Some(Rc::new(claims)),
        environment: None,
    };
    let authz = Authz {
        snapshot,
        callers,
        rules,
        abac,
        abac_principal,
        abac_headers: HeaderList::from_pairs([("x-tenant", "t1".to_string())]),
        no_headers: HeaderList::new(),
        client_ip: "203.0.113.7".parse().ok(),
    };

    let allowed = authz
        .callers
        .iter()
        .filter(|c| {
            let req = rules_request(&authz, &authz.snapshot, c);
            authorize(&authz.rules, &req).deny.is_none()
        })
        .count();
    let req = abac_request(&authz);
    let from_kp = AuthzRequest {
        country: Some("KP"),
        ..req
    };
    if authorize(&authz.abac, &req).deny.is_some()
        || authorize(&authz.abac, &from_kp).deny.is_none()
    {
        return Err(());
    }
    Ok((authz, allowed))
}

/// Sets up the authorization benches (the fixtures of `bench/benches/authz.rs`) over a
/// generated snapshot of `n` subscriptions with `seed` (the native bench: 100,000, seed 42),
/// replacing any previous setup. Returns how many of the [`authz_caller_count`] callers the
/// 5-rule policy allows, or `u32::MAX` if the setup fails (nothing is kept then).
#[no_mangle]
pub extern "C" fn authz_prepare(n: u32, seed: u32) -> u32 {
    STATE.with_borrow_mut(|st| st.authz = None);
    match build_authz(n as usize, u64::from(seed)) {
        Ok((authz, allowed)) => {
            STATE.with_borrow_mut(|st| st.authz = Some(Box::new(authz)));
            len_u32(allowed)
        }
        Err(()) => u32::MAX,
    }
}

/// The number of callers [`authz_rules`] cycles over (0 before [`authz_prepare`]).
#[no_mangle]
pub extern "C" fn authz_caller_count() -> u32 {
    STATE.with_borrow(|st| st.authz.as_ref().map_or(0, |a| len_u32(a.callers.len())))
}

/// `iterations` decisions of the 5-rule policy (`authorize/5-rules/100k-snapshot`), cycling
/// over the callers. Returns how many were allowed, or `u32::MAX` before [`authz_prepare`].
#[no_mangle]
pub extern "C" fn authz_rules(iterations: u32) -> u32 {
    with_authz(|authz| {
        let mut allowed = 0u32;
        for i in 0..iterations as usize {
            let caller = &authz.callers[i % authz.callers.len()];
            let req = rules_request(authz, black_box(&authz.snapshot), caller);
            let verdict = authorize(black_box(&authz.rules), &req);
            allowed = allowed.wrapping_add(u32::from(verdict.deny.is_none()));
        }
        allowed
    })
}

/// `iterations` decisions of the 20 Cedar policies (`authorize/abac-20-policies`), all the same
/// request. Returns how many were allowed (all of them), or `u32::MAX` before
/// [`authz_prepare`].
#[no_mangle]
pub extern "C" fn authz_abac(iterations: u32) -> u32 {
    with_authz(|authz| {
        let req = abac_request(authz);
        let mut allowed = 0u32;
        for _ in 0..iterations {
            let verdict = authorize(black_box(&authz.abac), black_box(&req));
            allowed = allowed.wrapping_add(u32::from(verdict.deny.is_none()));
        }
        allowed
    })
}

/// `f(authz)`, or `u32::MAX` before [`authz_prepare`].
fn with_authz(f: impl FnOnce(&Authz) -> u32) -> u32 {
    STATE.with_borrow(|st| st.authz.as_deref().map_or(u32::MAX, f))
}

/// `f(snapshot, probes)`, or `u32::MAX` if nothing is decoded or `f` returns None.
fn with_snapshot(f: impl FnOnce(&Snapshot, &Probes) -> Option<u32>) -> u32 {
    STATE.with_borrow(|st| {
        st.snapshot
            .as_ref()
            .and_then(|snap| f(snap, &st.probes))
            .unwrap_or(u32::MAX)
    })
}

/// A length as u32 (lossless on wasm32; saturates elsewhere).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

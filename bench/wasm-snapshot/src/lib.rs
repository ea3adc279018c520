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
//! - authorization decision: [`authz_prepare`] (the fixtures `bench/benches/authz.rs` uses,
//!   [`edgegate_bench::authz_fixture`]: up to 1,024 callers (721 with seed 42) and the 5-rule
//!   policy over a generated snapshot, the 20-policy Cedar set and its caller), then the
//!   decision loops [`authz_rules`] and [`authz_abac`].
//!
//! Built with the workspace's release profile (`opt-level = "s"`, fat LTO; Cedar's crates at
//! `opt-level = "z"`), as the worker is. Cedar adds no imports: nothing it links asks the host
//! for randomness or time (std's `HashMap` seeding makes no host call on
//! wasm32-unknown-unknown), and the node script refuses a module that has imports.

use edgegate_bench::authz_fixture::Authz;
use edgegate_core::authz::authorize;
use edgegate_core::snapshot::{decode, encode, generate, CredentialKind, Snapshot};
use std::cell::RefCell;
use std::hint::black_box;

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

/// Sets up the authorization benches ([`Authz::build`], as `bench/benches/authz.rs`) over a
/// generated snapshot of `n` subscriptions with `seed` (the native bench: 100,000, seed 42),
/// replacing any previous setup. Returns how many of the [`authz_caller_count`] callers the
/// 5-rule policy allows, or `u32::MAX` if the setup fails (nothing is kept then).
#[no_mangle]
pub extern "C" fn authz_prepare(n: u32, seed: u32) -> u32 {
    STATE.with_borrow_mut(|st| st.authz = None);
    match Authz::build(n as usize, u64::from(seed)) {
        Ok(authz) => {
            let allowed = authz.rules_allowed();
            STATE.with_borrow_mut(|st| st.authz = Some(Box::new(authz)));
            len_u32(allowed)
        }
        Err(_) => u32::MAX,
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
            let req = authz.rules_request(black_box(&authz.snapshot), caller);
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
        let req = authz.abac_request();
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

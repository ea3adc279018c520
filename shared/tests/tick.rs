//! The scheduled run and the lazy tick (Spin's stand-in for the Workers cron) over the fake
//! platform, with fresh instances per request (`set_reuses_instances(false)`, a new
//! [`Gateway`] for each): the tick runs when due and not again within the interval, not
//! while another instance holds a live lease, again once that lease expires; two instances
//! racing for a free lease run one tick; a failing sync still prefetches the JWKS; nothing is
//! read when there is nothing to do.

mod common;

use common::registry::{bundle, id_of, key, sign, REGISTRY_TOKEN, REGISTRY_URL};
use edgegate_core::config_store::{version_key, RefreshOutcome, POINTER_KEY};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, RuntimeSettings};
use edgegate_core::platform::{HttpResponse, PlatformError};
use edgegate_core::registry::{
    NotDue, RegistrySettings, TickDecision, TickLease, TickReport, TickSettings, TICK_LEASE_KEY,
};
use edgegate_core::testing::FakePlatform;
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

const JWKS_URL: &str = "https://idp.example/jwks";
const P256_JWK: &str = include_str!("fixtures/p256.jwk.json");
const MINUTE: u64 = 60_000;

/// A config whose one route accepts JWTs from a JWKS provider (what the prefetch fetches).
fn config(pool_url: &str, with_idp: bool) -> Value {
    let mut route = json!({ "name": "r", "path": "/{*rest}" });
    let mut doc = json!({
        "pools": { "p": { "instances": [{ "url": pool_url }] } },
        "apis": [{ "name": "orders", "base_path": "/orders", "pool": "p", "routes": [] }]
    });
    if with_idp {
        route["policies"] = json!({ "auth": { "accept": ["jwt"], "jwt": {
            "providers": ["idp"], "audiences": ["api"], "algorithms": ["ES256"] } } });
        doc["identity_providers"] =
            json!({ "idp": { "issuer": "https://idp.example", "jwks_uri": JWKS_URL } });
    }
    doc["apis"][0]["routes"] = json!([route]);
    doc
}

/// The scripted network: a Registry serving `bundle` (or refusing connections) and an IdP
/// serving one key; counts the calls to each.
struct Net {
    bundle: RefCell<Vec<u8>>,
    registry_down: Cell<bool>,
    registry_hits: Cell<u32>,
    jwks_hits: Cell<u32>,
}

/// A fresh-instance platform with `v1` active (the seeded config) and the scripted network.
fn platform(with_idp: bool, served: Vec<u8>) -> (FakePlatform, Rc<Net>) {
    let p = FakePlatform::new();
    p.set_reuses_instances(false);
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(
        &version_key("v1"),
        &config("http://10.0.0.1", with_idp).to_string(),
    );
    let net = Rc::new(Net {
        bundle: RefCell::new(served),
        registry_down: Cell::new(false),
        registry_hits: Cell::new(0),
        jwks_hits: Cell::new(0),
    });
    let n = net.clone();
    p.on_http(move |req, _| {
        let answer = |status: u16, headers: Vec<(&str, String)>, body: Vec<u8>| HttpResponse {
            status,
            headers: HeaderList::from_pairs(headers),
            body,
        };
        if req.url == JWKS_URL {
            n.jwks_hits.set(n.jwks_hits.get() + 1);
            let mut jwk: Value = serde_json::from_str(P256_JWK).expect("fixture");
            jwk["kid"] = "k1".into();
            let body = json!({ "keys": [jwk] }).to_string().into_bytes();
            return Ok(answer(
                200,
                vec![("content-type", "application/json".into())],
                body,
            ));
        }
        assert_eq!(req.url, REGISTRY_URL);
        n.registry_hits.set(n.registry_hits.get() + 1);
        if n.registry_down.get() {
            return Err(PlatformError("connection refused".into()));
        }
        let bundle = n.bundle.borrow().clone();
        let etag = format!("\"{}\"", id_of(&bundle));
        let sent_etag = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("if-none-match"))
            .map(|(_, v)| v.clone());
        if sent_etag.as_deref() == Some(etag.as_str()) {
            return Ok(answer(304, vec![("etag", etag)], Vec::new()));
        }
        Ok(answer(200, vec![("etag", etag)], bundle))
    });
    (p, net)
}

fn registry_settings() -> Option<RegistrySettings> {
    let vars = [
        ("EDGEGATE_REGISTRY_URL", REGISTRY_URL.to_string()),
        ("EDGEGATE_REGISTRY_TOKEN", REGISTRY_TOKEN.to_string()),
        ("EDGEGATE_REGISTRY_KEYS", key(1).1),
    ];
    RegistrySettings::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
        .expect("valid settings")
}

/// One request's instance, as the Spin component builds it (nothing kept between requests),
/// after the pipeline loaded the config.
fn instance(p: &FakePlatform, registry: Option<RegistrySettings>) -> Gateway {
    let gw = Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_registry(Ok(registry));
    block_on(gw.config_store().refresh(p));
    gw
}

fn tick(p: &FakePlatform, registry: Option<RegistrySettings>) -> TickDecision {
    block_on(instance(p, registry).tick_if_due(p, &TickSettings::default()))
}

fn ran(d: TickDecision) -> TickReport {
    match d {
        TickDecision::Ran(r) => r,
        other => panic!("expected a tick, got {other:?}"),
    }
}

fn lease(p: &FakePlatform) -> TickLease {
    serde_json::from_str(&p.kv_text(TICK_LEASE_KEY).expect("a lease")).expect("lease JSON")
}

fn v2() -> Vec<u8> {
    sign(&bundle("r2", &config("http://10.0.0.2", true), None), 1)
}

#[test]
fn the_tick_syncs_and_prefetches_when_due_and_not_again_within_the_interval() {
    let served = v2();
    let (p, net) = platform(true, served.clone());

    let report = ran(tick(&p, registry_settings()));
    assert_eq!(report.registry["result"], "activated", "{report:?}");
    assert_eq!(report.config, RefreshOutcome::Activated(id_of(&served)));
    assert_eq!(p.kv_text(POINTER_KEY), Some(id_of(&served)));
    assert_eq!(report.jwks_keys, 1, "{report:?}");
    assert_eq!((net.registry_hits.get(), net.jwks_hits.get()), (1, 1));
    let held = lease(&p);
    assert!(held.finished_ms.is_some(), "freed: {held:?}");
    assert!(p.take_logs().iter().any(|l| l.contains("\"config_check\"")
        && l.contains("\"trigger\":\"tick\"")
        && l.contains("\"lease_freed\":true")));

    // The next requests within the interval (fresh instances) read the lease and go on.
    for _ in 0..3 {
        p.advance(19_000);
        let d = tick(&p, registry_settings());
        assert!(
            matches!(d, TickDecision::NotDue(NotDue::Early { due_ms }) if due_ms == held.started_ms + MINUTE),
            "{d:?}"
        );
    }
    assert_eq!((net.registry_hits.get(), net.jwks_hits.get()), (1, 1));

    // An interval after the first one started: the next tick (the Registry has nothing new).
    p.advance(3_000);
    let report = ran(tick(&p, registry_settings()));
    assert_eq!(report.registry["result"], "not_modified", "{report:?}");
    assert_eq!(net.registry_hits.get(), 2);
}

#[test]
fn no_tick_while_another_instance_holds_a_live_lease_and_one_after_it_expires() {
    let (p, net) = platform(true, v2());
    let now = 1_700_000_000_000;
    // Another instance started a tick two intervals ago and never finished (it died); its
    // lease runs 10 s more.
    let stale = TickLease {
        owner: "other".into(),
        started_ms: now - 2 * MINUTE,
        expires_ms: now + 10_000,
        finished_ms: None,
    };
    p.kv_put(
        TICK_LEASE_KEY,
        &serde_json::to_string(&stale).expect("json"),
    );
    assert_eq!(
        tick(&p, registry_settings()),
        TickDecision::NotDue(NotDue::Busy {
            until_ms: now + 10_000
        })
    );
    assert_eq!(net.registry_hits.get(), 0);

    p.advance(10_000);
    ran(tick(&p, registry_settings()));
    assert_eq!(net.registry_hits.get(), 1);
    let mine = lease(&p);
    assert_ne!(mine.owner, "other");
    assert_eq!(mine.started_ms, now + 10_000);
}

#[test]
fn two_instances_racing_for_a_free_lease_run_one_tick() {
    let (p, net) = platform(true, v2());
    let (a, b) = (
        instance(&p, registry_settings()),
        instance(&p, registry_settings()),
    );
    // Both read the free lease before either writes: the later write wins the read-back.
    p.set_kv_yields(true);
    let settings = TickSettings::default();
    let (da, db) = block_on(futures::future::join(
        a.tick_if_due(&p, &settings),
        b.tick_if_due(&p, &settings),
    ));
    let outcomes = [&da, &db];
    assert_eq!(
        outcomes
            .iter()
            .filter(|d| matches!(d, TickDecision::Ran(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|d| **d == TickDecision::Lost),
        "{outcomes:?}"
    );
    assert_eq!(net.registry_hits.get(), 1);
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("\"registry_tick_lost\"")));
}

#[test]
fn a_failing_sync_still_prefetches_and_frees_the_lease() {
    let (p, net) = platform(true, v2());
    net.registry_down.set(true);
    let report = ran(tick(&p, registry_settings()));
    assert_eq!(
        report.registry,
        json!({"result": "failed", "code": "registry_unreachable"})
    );
    assert_eq!(report.config, RefreshOutcome::Unchanged("v1".into()));
    assert_eq!(report.jwks_keys, 1);
    assert_eq!(net.jwks_hits.get(), 1);
    assert!(lease(&p).finished_ms.is_some());
    assert_eq!(p.kv_text(POINTER_KEY).as_deref(), Some("v1"));

    // The next tick comes an interval later; the sync's own backoff (60 s after the first
    // failure) has passed by then, so it tries the Registry again.
    net.registry_down.set(false);
    p.advance(MINUTE);
    let report = ran(tick(&p, registry_settings()));
    assert_eq!(report.registry["result"], "activated", "{report:?}");
}

#[test]
fn without_a_sync_the_tick_still_prefetches() {
    let (p, net) = platform(true, v2());
    let report = ran(tick(&p, None));
    assert_eq!(report.registry, json!({"result": "off"}));
    assert_eq!(report.jwks_keys, 1);
    assert_eq!((net.registry_hits.get(), net.jwks_hits.get()), (0, 1));
}

#[test]
fn nothing_to_do_reads_nothing() {
    // No sync and no identity provider: not even the lease is read.
    let (p, _) = platform(false, v2());
    let gw = instance(&p, None);
    let reads = p.kv_reads();
    assert_eq!(
        block_on(gw.tick_if_due(&p, &TickSettings::default())),
        TickDecision::Idle
    );
    assert_eq!(p.kv_reads(), reads);
    assert_eq!(p.kv_text(TICK_LEASE_KEY), None);

    // The lazy tick turned off (interval 0): idle even with a sync configured.
    let (p, net) = platform(true, v2());
    let gw = instance(&p, registry_settings());
    let off = TickSettings { interval_ms: 0 };
    assert_eq!(block_on(gw.tick_if_due(&p, &off)), TickDecision::Idle);
    assert_eq!(net.registry_hits.get(), 0);
}

#[test]
fn a_store_that_cannot_be_read_runs_no_tick() {
    let (p, net) = platform(true, v2());
    let gw = instance(&p, registry_settings());
    p.set_kv_down(true);
    let d = block_on(gw.tick_if_due(&p, &TickSettings::default()));
    assert!(
        matches!(&d, TickDecision::StoreFailed(e) if e.code == "store_failed"),
        "{d:?}"
    );
    assert_eq!(net.registry_hits.get(), 0);
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("\"registry_tick_store_failed\"")));
}

#[test]
fn the_scheduled_run_is_the_workers_cron() {
    // What the Workers cron logs as config_check: the same report, with the sync off.
    let (p, net) = platform(true, v2());
    p.set_reuses_instances(true);
    let gw = instance(&p, None);
    let report = block_on(gw.scheduled_run(&p));
    assert_eq!(report.config, RefreshOutcome::Unchanged("v1".into()));
    assert!(report.control_reachable);
    let fields = report.fields();
    for k in [
        "outcome",
        "snapshot",
        "jwks_keys",
        "control_reachable",
        "registry",
    ] {
        assert!(fields.get(k).is_some(), "{k}: {fields}");
    }
    assert_eq!(fields["registry"], json!({"result": "off"}));
    assert_eq!(net.jwks_hits.get(), 1);
    // The cron itself takes no lease.
    assert_eq!(p.kv_text(TICK_LEASE_KEY), None);
}

//! The config and snapshot stores where every request runs in a fresh instance (Spin:
//! `reuses_instances() == false`), over the fake platform with a new `Gateway` per request,
//! built as `spin/src/lib.rs` builds it (every refresh interval 0). The stores keep their
//! "last good" state in a key-value marker (`config:serving`, `snapshot:serving`):
//! `config_activated` / `snapshot_activated` are logged once per version change with the right
//! `previous`, a version that does not compile (or a missing document, or a snapshot that does
//! not decode) keeps the previous one serving and is rejected once, and the steady state costs
//! one extra key-value read per store. Where instances are reused (Workers) the marker is never
//! read nor written.

mod common;

use edgegate_core::config_store::{version_key, ServingMarker, POINTER_KEY, SERVING_KEY};
use edgegate_core::control::ControlCache;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RuntimeSettings};
use edgegate_core::snapshot::{self, encode, from_json, shard, ShardManifest, MANIFEST_KEY};
use edgegate_core::testing::{FakeBody, FakePlatform};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The gateway of one request, as `spin/src/lib.rs` builds it (no older copy of anything).
fn fresh_gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_control(ControlCache::new(0))
}

/// A config with one API `cfg` (`/cfg/ping`), plus a route `/cfg/<extra>` when given.
fn config(extra: Option<&str>) -> Value {
    let mut routes = vec![json!({"name": "ping", "path": "/ping"})];
    if let Some(name) = extra {
        routes.push(json!({"name": name, "path": format!("/{name}")}));
    }
    json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{ "name": "cfg", "base_path": "/cfg", "pool": "p", "routes": routes }]
    })
}

/// Fails validation: a route names a pool that does not exist.
fn invalid() -> Value {
    let mut c = config(None);
    c["apis"][0]["routes"]
        .as_array_mut()
        .expect("routes")
        .push(json!({"name": "broken", "path": "/broken", "pool": "no-such-pool"}));
    c
}

/// A platform with `v1` stored and active, reusing instances or not.
fn platform(reuses_instances: bool) -> FakePlatform {
    let p = FakePlatform::new();
    p.set_reuses_instances(reuses_instances);
    put_version(&p, "v1", &config(None));
    p.kv_put(POINTER_KEY, "v1");
    p
}

fn put_version(p: &FakePlatform, id: &str, doc: &Value) {
    p.kv_put(&version_key(id), &doc.to_string());
}

/// One request on a gateway of its own (a fresh instance).
fn fresh(p: &FakePlatform, path: &str, headers: &[(&str, &str)]) -> GatewayResponse<FakeBody> {
    common::send(&fresh_gateway(), p, common::get(path, headers, None))
}

/// `n` fresh requests to `/cfg/ping`; returns the config version each ran on (from the
/// access lines) and the events logged meanwhile.
fn pings(p: &FakePlatform, n: usize) -> (Vec<Option<String>>, Vec<Value>) {
    p.take_logs();
    for _ in 0..n {
        fresh(p, "/cfg/ping", &[]);
    }
    let lines: Vec<Value> = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let versions = lines
        .iter()
        .filter(|v| v["kind"] != "event" && v.get("config_version").is_some())
        .map(|v| v["config_version"].as_str().map(str::to_string))
        .collect();
    let events = lines.into_iter().filter(|v| v["kind"] == "event").collect();
    (versions, events)
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

fn marker(p: &FakePlatform) -> ServingMarker {
    let text = p.kv_text(SERVING_KEY).expect("marker written");
    serde_json::from_str(&text).expect("marker is JSON")
}

fn v(id: &str) -> Option<String> {
    Some(id.to_string())
}

// === config ===

#[test]
fn activation_is_logged_once_per_version_change() {
    let p = platform(false);
    let (versions, events) = pings(&p, 3);
    assert_eq!(versions, [v("v1"), v("v1"), v("v1")]);
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["version"], "v1");
    assert_eq!(activated[0]["previous"], Value::Null);
    assert_eq!(marker(&p).version, v("v1"));

    put_version(&p, "v2", &config(Some("pong")));
    p.kv_put(POINTER_KEY, "v2");
    let (versions, events) = pings(&p, 3);
    assert_eq!(versions, [v("v2"), v("v2"), v("v2")]);
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["version"], "v2");
    assert_eq!(activated[0]["previous"], "v1");

    // Rollback is a change like any other.
    p.kv_put(POINTER_KEY, "v1");
    let (_, events) = pings(&p, 2);
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["previous"], "v2");
}

#[test]
fn the_steady_state_costs_one_read_more_than_a_reused_instance_and_writes_nothing() {
    let reads_per_request = |reuses: bool| {
        let p = platform(reuses);
        fresh(&p, "/cfg/ping", &[]);
        let (reads, writes) = (p.kv_reads(), p.kv_writes());
        fresh(&p, "/cfg/ping", &[]);
        (p.kv_reads() - reads, p.kv_writes() - writes)
    };
    let (fresh_reads, fresh_writes) = reads_per_request(false);
    let (reused_reads, _) = reads_per_request(true);
    assert_eq!(fresh_reads, reused_reads + 1);
    assert_eq!(fresh_writes, 0);
}

#[test]
fn an_invalid_new_version_keeps_the_previous_serving_and_is_rejected_once() {
    let p = platform(false);
    pings(&p, 1);
    put_version(&p, "bad", &invalid());
    p.kv_put(POINTER_KEY, "bad");
    let (versions, events) = pings(&p, 4);
    assert_eq!(versions, [v("v1"), v("v1"), v("v1"), v("v1")]);
    let rejected = named(&events, "config_rejected");
    assert_eq!(rejected.len(), 1, "{events:#?}");
    assert_eq!(rejected[0]["version"], "bad");
    assert_eq!(rejected[0]["serving"], "v1");
    assert!(rejected[0]["error_count"].as_u64() >= Some(1));
    assert!(named(&events, "config_activated").is_empty(), "{events:#?}");
    assert_eq!(
        marker(&p),
        ServingMarker {
            version: v("v1"),
            rejected: v("bad")
        }
    );
    // The new route of the bad version does not exist.
    assert_eq!(fresh(&p, "/cfg/broken", &[]).status, 404);

    // A good version after it activates, naming the last good one as previous.
    put_version(&p, "v2", &config(None));
    p.kv_put(POINTER_KEY, "v2");
    let (versions, events) = pings(&p, 2);
    assert_eq!(versions, [v("v2"), v("v2")]);
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["previous"], "v1");
    assert_eq!(marker(&p).rejected, None);
}

#[test]
fn a_version_that_is_not_json_keeps_the_previous_serving() {
    let p = platform(false);
    pings(&p, 1);
    p.kv_put(&version_key("garbled"), "{\"pools\": {");
    p.kv_put(POINTER_KEY, "garbled");
    let (versions, events) = pings(&p, 3);
    assert_eq!(versions, [v("v1"), v("v1"), v("v1")]);
    assert_eq!(named(&events, "config_rejected").len(), 1, "{events:#?}");
    assert!(named(&events, "config_activated").is_empty());
}

#[test]
fn a_missing_version_document_keeps_the_previous_serving_until_it_appears() {
    let p = platform(false);
    pings(&p, 1);
    p.kv_put(POINTER_KEY, "late");
    let (versions, events) = pings(&p, 3);
    assert_eq!(versions, [v("v1"), v("v1"), v("v1")]);
    let missing = named(&events, "config_version_missing");
    assert!(!missing.is_empty(), "{events:#?}");
    assert_eq!(missing[0]["version"], "late");
    assert_eq!(missing[0]["serving"], "v1");
    assert!(named(&events, "config_activated").is_empty());
    assert!(named(&events, "config_rejected").is_empty());
    // Not remembered as rejected: once the document appears, it activates.
    put_version(&p, "late", &config(Some("late")));
    let (versions, events) = pings(&p, 2);
    assert_eq!(versions, [v("late"), v("late")]);
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["previous"], "v1");
}

#[test]
fn without_a_last_good_version_an_invalid_one_answers_no_config_and_is_rejected_once() {
    let p = FakePlatform::new();
    p.set_reuses_instances(false);
    put_version(&p, "bad", &invalid());
    p.kv_put(POINTER_KEY, "bad");
    p.take_logs();
    for _ in 0..3 {
        let resp = fresh(&p, "/cfg/ping", &[]);
        assert_eq!(resp.status, 503);
        assert_eq!(common::problem_code(&resp), "no_config");
    }
    let events: Vec<Value> = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event")
        .collect();
    let rejected = named(&events, "config_rejected");
    assert_eq!(rejected.len(), 1, "{events:#?}");
    assert_eq!(rejected[0]["serving"], Value::Null);
    // A good version then activates, with no previous.
    put_version(&p, "good", &config(None));
    p.kv_put(POINTER_KEY, "good");
    let (versions, events) = pings(&p, 1);
    assert_eq!(versions, [v("good")]);
    assert_eq!(
        named(&events, "config_activated")[0]["previous"],
        Value::Null
    );
}

#[test]
fn a_last_good_version_that_no_longer_loads_answers_no_config() {
    let p = platform(false);
    pings(&p, 1);
    put_version(&p, "bad", &invalid());
    p.kv_put(POINTER_KEY, "bad");
    p.kv_delete(&version_key("v1"));
    let resp = fresh(&p, "/cfg/ping", &[]);
    assert_eq!(resp.status, 503);
    assert_eq!(common::problem_code(&resp), "no_config");
}

#[test]
fn where_instances_are_reused_the_marker_is_never_read_nor_written() {
    let p = platform(true);
    let gw = common::gateway();
    p.take_logs();
    common::send(&gw, &p, common::get("/cfg/ping", &[], None));
    put_version(&p, "bad", &invalid());
    p.kv_put(POINTER_KEY, "bad");
    p.advance(2000);
    common::send(&gw, &p, common::get("/cfg/ping", &[], None));
    put_version(&p, "v2", &config(None));
    p.kv_put(POINTER_KEY, "v2");
    p.advance(2000);
    common::send(&gw, &p, common::get("/cfg/ping", &[], None));
    assert_eq!(p.kv_text(SERVING_KEY), None);
    assert_eq!(p.kv_text(snapshot::SERVING_KEY), None);
    let events: Vec<Value> = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event")
        .collect();
    let activated = named(&events, "config_activated");
    assert_eq!(activated.len(), 2, "{events:#?}");
    assert_eq!(activated[1]["previous"], "v1");
    assert_eq!(named(&events, "config_rejected").len(), 1);
}

// === snapshot ===

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A snapshot where key `k1` belongs to app1, subscribed to `orders`.
fn snapshot_doc(version: &str) -> Value {
    json!({
        "version": version,
        "consumers": [{"id": "c1", "name": "Acme", "status": "active"}],
        "applications": [{"id": "app1", "consumer_id": "c1", "name": "web"}],
        "credentials": [{"kind": "api_key", "key": hex(&Sha256::digest(b"k1")), "consumer_id": "c1",
            "application_id": "app1", "status": "active", "scopes": []}],
        "plans": [{"id": "gold", "tier": "gold", "rate_plan": "rp-gold"}],
        "subscriptions": [{"id": "s1", "application_id": "app1", "api": "orders", "versions": ["v1"],
            "environment": "default", "plan_id": "gold", "status": "active", "scopes": []}]
    })
}

/// Stores a snapshot's shards; returns its manifest.
fn put_shards(p: &FakePlatform, doc: &Value) -> ShardManifest {
    let bytes = encode(&from_json(&doc.to_string()).expect("valid snapshot"));
    let (manifest, parts) = shard(&bytes, 200);
    for (i, part) in parts.iter().enumerate() {
        p.kv_put_bytes(&manifest.shard_key(snapshot::SHARD_PREFIX, i as u32), part);
    }
    manifest
}

/// Points `snapshot:manifest` at `m`.
fn point(p: &FakePlatform, m: &ShardManifest) {
    p.kv_put(MANIFEST_KEY, &serde_json::to_string(m).expect("json"));
}

/// An API-key API with a subscription rule, pinning `pinned` when given.
fn orders_config(pinned: Option<&ShardManifest>) -> Value {
    let mut doc = json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{ "name": "orders", "base_path": "/orders", "versions": [{"name": "v1", "pool": "p"}],
            "policies": { "auth": { "accept": ["api_key"] }, "authorization": { "subscription": {} } },
            "routes": [{ "name": "r", "path": "/{*rest}" }] }]
    });
    if let Some(m) = pinned {
        doc["snapshot"] = serde_json::to_value(m).expect("json");
    }
    doc
}

/// `n` fresh API-key requests; returns their statuses and the events logged meanwhile.
fn orders(p: &FakePlatform, n: usize) -> (Vec<u16>, Vec<Value>) {
    p.take_logs();
    let statuses = (0..n)
        .map(|_| fresh(p, "/orders/v1/x", &[("x-api-key", "k1")]).status)
        .collect();
    let events = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event")
        .collect();
    (statuses, events)
}

fn snapshot_platform(pinned: bool) -> (FakePlatform, ShardManifest) {
    let p = FakePlatform::new();
    p.set_reuses_instances(false);
    let a = put_shards(&p, &snapshot_doc("a"));
    point(&p, &a);
    put_version(&p, "v1", &orders_config(pinned.then_some(&a)));
    p.kv_put(POINTER_KEY, "v1");
    (p, a)
}

#[test]
fn snapshot_activation_is_logged_once_per_snapshot_change() {
    let (p, _) = snapshot_platform(false);
    let (statuses, events) = orders(&p, 3);
    assert_eq!(statuses, [200, 200, 200]);
    let activated = named(&events, "snapshot_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["previous"], Value::Null);

    let b = put_shards(&p, &snapshot_doc("b"));
    point(&p, &b);
    let (statuses, events) = orders(&p, 3);
    assert_eq!(statuses, [200, 200, 200]);
    let activated = named(&events, "snapshot_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["version"], "b");
    assert_eq!(activated[0]["previous"], "a");
}

#[test]
fn a_corrupted_snapshot_keeps_the_previous_serving_and_is_rejected_once() {
    let (p, _) = snapshot_platform(false);
    orders(&p, 1);
    // Bytes whose digest matches the manifest: they join, and do not decode.
    let garbage = vec![0x5a_u8; 600];
    let (bad, parts) = shard(&garbage, 1000);
    p.kv_put_bytes(&bad.shard_key(snapshot::SHARD_PREFIX, 0), parts[0]);
    point(&p, &bad);
    let (statuses, events) = orders(&p, 3);
    assert_eq!(statuses, [200, 200, 200], "the previous snapshot serves");
    let rejected = named(&events, "snapshot_rejected");
    assert_eq!(rejected.len(), 1, "{events:#?}");
    assert_eq!(rejected[0]["sha256"], bad.sha256.as_str());
    assert_eq!(rejected[0]["serving"], "a");
    assert!(
        named(&events, "snapshot_activated").is_empty(),
        "{events:#?}"
    );

    // A good one then activates, naming the last good one.
    let c = put_shards(&p, &snapshot_doc("c"));
    point(&p, &c);
    let (_, events) = orders(&p, 2);
    let activated = named(&events, "snapshot_activated");
    assert_eq!(activated.len(), 1, "{events:#?}");
    assert_eq!(activated[0]["previous"], "a");
}

#[test]
fn a_snapshot_with_a_missing_shard_keeps_the_previous_serving() {
    let (p, _) = snapshot_platform(false);
    orders(&p, 1);
    let b = put_shards(&p, &snapshot_doc("b"));
    p.kv_delete(&b.shard_key(snapshot::SHARD_PREFIX, 0));
    point(&p, &b);
    let (statuses, events) = orders(&p, 2);
    assert_eq!(statuses, [200, 200]);
    assert!(!named(&events, "snapshot_shard_missing").is_empty());
    assert!(named(&events, "snapshot_activated").is_empty());
}

#[test]
fn the_snapshot_steady_state_costs_one_read_more_per_store_and_writes_nothing() {
    let reads_per_request = |reuses: bool| {
        let (p, _) = snapshot_platform(false);
        p.set_reuses_instances(reuses);
        orders(&p, 1);
        let (reads, writes) = (p.kv_reads(), p.kv_writes());
        assert_eq!(orders(&p, 1).0, [200]);
        (p.kv_reads() - reads, p.kv_writes() - writes)
    };
    let (fresh_reads, fresh_writes) = reads_per_request(false);
    let (reused_reads, _) = reads_per_request(true);
    // The config marker and the snapshot marker.
    assert_eq!(fresh_reads, reused_reads + 2);
    assert_eq!(fresh_writes, 0);
}

#[test]
fn a_pinned_snapshot_is_logged_once_too() {
    let (p, _) = snapshot_platform(true);
    let (statuses, events) = orders(&p, 3);
    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(named(&events, "snapshot_activated").len(), 1, "{events:#?}");
}

//! Config ↔ snapshot coupling over the fake platform: a config that embeds a snapshot
//! manifest runs with exactly that snapshot (the `snapshot:manifest` key is not read), one
//! pointer write switches config and snapshot together, a request of the previous version
//! still finds its snapshot, and a config without the field keeps the `snapshot:manifest`
//! behaviour.

mod common;

use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::snapshot::{
    encode, from_json, shard, ShardManifest, MANIFEST_KEY, SHARD_PREFIX,
};
use edgegate_core::testing::FakePlatform;
use futures::executor::block_on;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A snapshot where key `k1` belongs to app1, whose subscription to `orders` has `status`.
fn snapshot(version: &str, status: &str) -> Value {
    json!({
        "version": version,
        "consumers": [{"id": "c1", "name": "Acme", "status": "active"}],
        "applications": [{"id": "app1", "consumer_id": "c1", "name": "web"}],
        "credentials": [{"kind": "api_key", "key": hex(&Sha256::digest(b"k1")), "consumer_id": "c1",
            "application_id": "app1", "status": "active", "scopes": []}],
        "plans": [{"id": "gold", "tier": "gold", "rate_plan": "rp-gold"}],
        "subscriptions": [{"id": "s1", "application_id": "app1", "api": "orders", "versions": ["v1"],
            "environment": "default", "plan_id": "gold", "status": status, "scopes": []}]
    })
}

/// Encodes and stores a snapshot's shards (not its manifest); returns the manifest.
fn put_shards(p: &FakePlatform, doc: &Value) -> ShardManifest {
    let bytes = encode(&from_json(&doc.to_string()).expect("valid snapshot"));
    let (manifest, parts) = shard(&bytes, 200);
    for (i, part) in parts.iter().enumerate() {
        p.kv_put_bytes(&manifest.shard_key(SHARD_PREFIX, i as u32), part);
    }
    manifest
}

fn config(manifest: Option<&ShardManifest>) -> Value {
    let mut doc = json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{ "name": "orders", "base_path": "/orders", "versions": [{"name": "v1", "pool": "p"}],
            "policies": { "auth": { "accept": ["api_key"] }, "authorization": { "subscription": {} } },
            "routes": [{ "name": "r", "path": "/{*rest}" }] }]
    });
    if let Some(m) = manifest {
        doc["snapshot"] = serde_json::to_value(m).expect("json");
    }
    doc
}

fn call(gw: &edgegate_core::pipeline::Gateway, p: &FakePlatform) -> (u16, String) {
    let resp = common::send(
        gw,
        p,
        common::get("/orders/v1/x", &[("x-api-key", "k1")], None),
    );
    let code = common::problem_code(&resp);
    (resp.status, code)
}

#[test]
fn an_embedded_manifest_pins_the_snapshot_and_switches_with_the_pointer() {
    let p = FakePlatform::new();
    let active = put_shards(&p, &snapshot("a", "active"));
    let suspended = put_shards(&p, &snapshot("b", "suspended"));
    // The legacy key names the suspended snapshot: a pinned config must not read it.
    p.kv_put(
        MANIFEST_KEY,
        &serde_json::to_string(&suspended).expect("json"),
    );
    p.kv_put(&version_key("v1"), &config(Some(&active)).to_string());
    p.kv_put(&version_key("v2"), &config(Some(&suspended)).to_string());
    p.kv_put(POINTER_KEY, "v1");
    let gw = common::gateway();

    assert_eq!(call(&gw, &p), (200, String::new()), "v1 runs on snapshot a");
    assert_eq!(call(&gw, &p), (200, String::new()));

    // One pointer write switches config and snapshot together.
    p.kv_put(POINTER_KEY, "v2");
    p.advance(1_001);
    assert_eq!(call(&gw, &p), (403, "subscription_suspended".into()));

    // A request that started on v1 still gets v1's snapshot (kept as the previous one).
    let store = gw.snapshot_store();
    let snap = block_on(store.current_for(&p, Some(&active))).expect("a is still loaded");
    assert_eq!(snap.version(), "a");
    let reads = p.kv_reads();
    block_on(store.current_for(&p, Some(&active)));
    block_on(store.current_for(&p, Some(&suspended)));
    assert_eq!(
        p.kv_reads(),
        reads,
        "loaded snapshots are served without I/O"
    );

    // Back to v1 (rollback): its snapshot again, from memory.
    p.kv_put(POINTER_KEY, "v1");
    p.advance(1_001);
    assert_eq!(call(&gw, &p), (200, String::new()));
    assert!(
        !p.take_logs()
            .iter()
            .any(|l| l.contains("snapshot_store_error")),
        "the legacy manifest key was never needed"
    );
}

#[test]
fn a_pinned_snapshot_that_is_not_in_the_store_is_unavailable_and_tried_again() {
    let p = FakePlatform::new();
    let bytes = encode(&from_json(&snapshot("late", "active").to_string()).expect("valid"));
    let (manifest, parts) = shard(&bytes, usize::MAX);
    p.kv_put(&version_key("v1"), &config(Some(&manifest)).to_string());
    p.kv_put(POINTER_KEY, "v1");
    let gw = common::gateway();
    assert_eq!(call(&gw, &p).0, 401, "no snapshot, so the key is unknown");
    // Not retried within the refresh interval (the key's record is still looked up).
    let reads = p.kv_reads();
    assert_eq!(call(&gw, &p).0, 401);
    assert_eq!(p.kv_reads(), reads);
    // The shard arrives (eventual consistency): the next interval loads it.
    p.kv_put_bytes(&manifest.shard_key(SHARD_PREFIX, 0), parts[0]);
    p.advance(1_001);
    assert_eq!(call(&gw, &p), (200, String::new()));
}

#[test]
fn without_the_field_the_manifest_key_names_the_snapshot() {
    let p = common::platform_with(&config(None));
    let gw = common::gateway();
    // No snapshot: the key cannot be found (API keys are looked up in the snapshot first).
    assert_eq!(call(&gw, &p).0, 401);
    let m = put_shards(&p, &snapshot("a", "active"));
    p.kv_put(MANIFEST_KEY, &serde_json::to_string(&m).expect("json"));
    p.advance(1_001);
    assert_eq!(call(&gw, &p), (200, String::new()));
    let m = put_shards(&p, &snapshot("b", "suspended"));
    p.kv_put(MANIFEST_KEY, &serde_json::to_string(&m).expect("json"));
    p.advance(1_001);
    assert_eq!(call(&gw, &p), (403, "subscription_suspended".into()));
}

#[test]
fn an_embedded_manifest_is_validated_with_the_config() {
    let cases: &[(Value, &[&str])] = &[
        (
            json!({"shards": 1, "len": 3, "sha256": "ABC"}),
            &["$.snapshot.sha256"],
        ),
        (
            json!({"shards": 0, "len": 0, "sha256": "0".repeat(64)}),
            &["$.snapshot.shards"],
        ),
        (json!({"shards": 1, "len": 3}), &["$.snapshot"]),
        (
            json!({"shards": 1, "len": 3, "sha256": "0".repeat(64), "x": 1}),
            &["$.snapshot.x"],
        ),
    ];
    for (manifest, paths) in cases {
        let mut doc = config(None);
        doc["snapshot"] = manifest.clone();
        let (found, errors) = common::config_errors(&doc);
        assert_eq!(&found, paths, "{manifest}: {errors:?}");
    }
    let mut doc = config(None);
    doc["snapshot"] = json!({"shards": 2, "len": 10, "sha256": "a".repeat(64)});
    let cfg = edgegate_core::config::compile(&doc.to_string(), "v").expect("compiles");
    assert_eq!(cfg.snapshot_manifest().map(|m| m.shards), Some(2));
}

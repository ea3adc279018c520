//! The Registry sync over the fake platform: a scripted Registry serving signed bundles,
//! every rejection (the last good version keeps serving), 304, backoff and forced syncs,
//! retention, activation and rollback.

mod common;

use common::registry::{
    bundle, id_of, key, serve, settings, sign, snapshot, Mode, REGISTRY_TOKEN as TOKEN,
};
use edgegate_core::bundle::{decode, version_id, Bundle};
use edgegate_core::config_store::{version_key, ConfigStore, RefreshOutcome, POINTER_KEY};
use edgegate_core::pipeline::{Gateway, RuntimeSettings};
use edgegate_core::platform::Kv;
use edgegate_core::registry::{
    activate, history, rollback, status, sync, RegistrySettings, Source, SyncOutcome, SyncResult,
    HISTORY_KEY, STATUS_KEY,
};
use edgegate_core::snapshot::MANIFEST_KEY;
use edgegate_core::testing::FakePlatform;
use futures::executor::block_on;
use serde_json::{json, Value};

/// The compile rules of an isolate without an admin API.
fn rules() -> ConfigStore {
    ConfigStore::new(0)
}

fn config(pool_url: &str) -> Value {
    json!({
        "pools": { "p": { "instances": [{ "url": pool_url }] } },
        "apis": [{ "name": "orders", "base_path": "/orders", "pool": "p",
            "routes": [{ "name": "r", "path": "/{*rest}" }] }]
    })
}

fn pointer(p: &FakePlatform) -> Option<String> {
    p.kv_text(POINTER_KEY)
}

fn activated(outcome: Result<SyncOutcome, edgegate_core::registry::RegistryError>) -> String {
    match outcome {
        Ok(SyncOutcome::Activated { version, .. }) => version,
        other => panic!("expected an activation, got {other:?}"),
    }
}

#[test]
fn first_sync_then_304_then_a_new_version() {
    let v1 = sign(
        &bundle("r1", &config("http://10.0.0.1"), Some(&snapshot("s1"))),
        1,
    );
    let (p, reg) = serve(v1.clone());
    let s = settings(&[]);
    let gw = Gateway::new(RuntimeSettings::default());

    let id1 = activated(block_on(sync(&p, &rules(), &s, false)));
    assert_eq!(id1, id_of(&v1));
    assert_eq!(pointer(&p).as_deref(), Some(id1.as_str()));
    let doc: Value =
        serde_json::from_str(&p.kv_text(&version_key(&id1)).expect("doc")).expect("json");
    let sha = doc["snapshot"]["sha256"]
        .as_str()
        .expect("manifest")
        .to_string();
    let shards = p
        .kv_keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("snapshot:{sha}:")))
        .count();
    assert_eq!(
        shards as u64,
        doc["snapshot"]["shards"].as_u64().expect("n")
    );
    assert!(shards > 1, "small shards");
    // The isolate's stores pick it up: config and snapshot.
    assert_eq!(
        block_on(gw.config_store().refresh(&p)),
        RefreshOutcome::Activated(id1.clone())
    );
    let cfg = gw.config_store().active().expect("active");
    let snap =
        block_on(gw.snapshot_store().current_for(&p, cfg.snapshot_manifest())).expect("snapshot");
    assert_eq!(snap.version(), "s1");

    let h = block_on(history(&p)).expect("history");
    assert_eq!(h.entries.len(), 1);
    let e = &h.entries[0];
    assert_eq!(
        (e.id.as_str(), e.label.as_str(), e.source),
        (id1.as_str(), "r1", Source::Sync)
    );
    assert_eq!(e.key_id.as_deref(), Some(key(1).2.as_str()));
    let st = block_on(status(&p)).expect("status");
    assert_eq!(
        (st.result, st.consecutive_failures),
        (Some(SyncResult::Activated), 0)
    );
    assert_eq!(st.etag, Some(format!("\"{}\"", version_id(&v1))));
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("\"registry_sync\"") && l.contains(&id1)));

    // Nothing new: 304, and only the status is written.
    let writes = p.kv_writes();
    assert_eq!(
        block_on(sync(&p, &rules(), &s, false)),
        Ok(SyncOutcome::NotModified)
    );
    assert_eq!(p.kv_writes(), writes + 1);
    let sent = reg.borrow().requests.clone();
    assert_eq!(sent[0], (Some(format!("Bearer {TOKEN}")), None));
    assert_eq!(sent[1].1, st.etag, "If-None-Match carries the last ETag");

    // A new release: activated, and the previous one is in the history.
    let v2 = sign(
        &bundle("r2", &config("http://10.0.0.2"), Some(&snapshot("s2"))),
        1,
    );
    reg.borrow_mut().bundle = v2.clone();
    let outcome = block_on(sync(&p, &rules(), &s, false)).expect("sync");
    let SyncOutcome::Activated {
        version, previous, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (version.as_str(), previous.as_deref()),
        (id_of(&v2).as_str(), Some(id1.as_str()))
    );
    let h = block_on(history(&p)).expect("history");
    assert_eq!(
        h.entries
            .iter()
            .map(|e| e.label.as_str())
            .collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    p.advance(10_000);
    let cfg = block_on(gw.config_store().current(&p)).expect("config");
    assert_eq!(cfg.version(), version);
    let snap =
        block_on(gw.snapshot_store().current_for(&p, cfg.snapshot_manifest())).expect("snapshot");
    assert_eq!(snap.version(), "s2", "config and snapshot switch together");

    // The Registry serves the active version again without its ETag matching: unchanged.
    reg.borrow_mut().bundle = v2.clone();
    p.kv_delete(STATUS_KEY);
    assert_eq!(
        block_on(sync(&p, &rules(), &s, false)),
        Ok(SyncOutcome::Unchanged { version })
    );
}

#[test]
fn the_same_snapshot_split_another_way_is_refused_and_the_stored_shards_stay() {
    let good = config("http://10.0.0.1");
    let snap = snapshot("s");
    // bundle() splits into 16-byte shards; this one into 8-byte shards: same SHA-256, the
    // same shard keys, other contents.
    let v1 = sign(&bundle("v1", &good, Some(&snap)), 1);
    let (p, reg) = serve(v1);
    let id1 = activated(block_on(sync(&p, &rules(), &settings(&[]), false)));
    let shards_before: Vec<_> = p
        .kv_keys()
        .into_iter()
        .filter(|k| k.starts_with("snapshot:"))
        .map(|k| (k.clone(), block_on(p.get_bytes(&k))))
        .collect();
    let mut other = good.clone();
    other["apis"][0]["name"] = json!("renamed");
    let resplit = Bundle::with_snapshot("v2", 2, &other.to_string(), Some(&snap), 8)
        .expect("bundle")
        .encode();
    reg.borrow_mut().bundle = sign(&resplit, 1);
    let err = block_on(sync(&p, &rules(), &settings(&[]), true)).expect_err("other split");
    assert_eq!(err.code(), "snapshot_invalid", "{err}");
    assert!(err.message.contains(&id1), "{err}");
    assert_eq!(pointer(&p).as_deref(), Some(id1.as_str()));
    for (k, v) in shards_before {
        assert_eq!(block_on(p.get_bytes(&k)), v, "{k} unchanged");
    }
}

/// (name, what the Registry serves or how it fails, settings overrides, expected code)
struct Rejection {
    name: &'static str,
    bundle: Vec<u8>,
    mode: Mode,
    vars: Vec<(&'static str, &'static str)>,
    writes_down: bool,
    code: &'static str,
}

#[test]
fn every_rejection_keeps_the_last_good_version() {
    let good = config("http://10.0.0.1");
    let snap = snapshot("s");
    let mut invalid = config("http://10.0.0.1");
    invalid["apis"][0]["routes"][0]["path"] = json!("{id");
    invalid["pools"]["p"]["instances"][0]["weight"] = json!(0);
    let signed_good = sign(&bundle("new", &good, Some(&snap)), 1);
    let mut tampered = signed_good.clone();
    let d = decode(&signed_good).expect("bundle");
    tampered[d.signed_part.len() - 1] ^= 0x01;
    // Shards that are not the snapshot the config names (correctly signed).
    let mut wrong_shards =
        Bundle::with_snapshot("ws", 1, &good.to_string(), Some(&snap), 64).expect("b");
    wrong_shards.shards = vec![b"not the snapshot".to_vec()];
    // Shards that join to the named SHA-256 but do not decode.
    let garbage = b"EGSN garbage that is not a snapshot".to_vec();
    let undecodable =
        Bundle::with_snapshot("ud", 1, &good.to_string(), Some(&garbage), 64).expect("b");
    let rejections = vec![
        Rejection {
            name: "invalid config",
            bundle: sign(&bundle("bad", &invalid, None), 1),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "config_invalid",
        },
        Rejection {
            name: "tampered",
            bundle: tampered,
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "bundle_bad_signature",
        },
        Rejection {
            name: "unknown key",
            bundle: sign(&bundle("k3", &good, None), 3),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "bundle_unknown_key",
        },
        Rejection {
            name: "unsigned",
            bundle: bundle("u", &good, None),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "bundle_unsigned",
        },
        Rejection {
            name: "not a bundle",
            bundle: b"<html>oops</html>".to_vec(),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "bundle_malformed",
        },
        Rejection {
            name: "wrong shards",
            bundle: sign(&wrong_shards.encode(), 1),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "snapshot_invalid",
        },
        Rejection {
            name: "undecodable snapshot",
            bundle: sign(&undecodable.encode(), 1),
            mode: Mode::Up,
            vars: vec![],
            writes_down: false,
            code: "snapshot_invalid",
        },
        Rejection {
            name: "registry down",
            bundle: signed_good.clone(),
            mode: Mode::Refused,
            vars: vec![],
            writes_down: false,
            code: "registry_unreachable",
        },
        Rejection {
            name: "registry 503",
            bundle: signed_good.clone(),
            mode: Mode::Status(503),
            vars: vec![],
            writes_down: false,
            code: "registry_status",
        },
        Rejection {
            name: "wrong token",
            bundle: signed_good.clone(),
            mode: Mode::Up,
            vars: vec![("EDGEGATE_REGISTRY_TOKEN", "wrong")],
            writes_down: false,
            code: "registry_status",
        },
        Rejection {
            name: "KV refuses writes",
            bundle: signed_good.clone(),
            mode: Mode::Up,
            vars: vec![],
            writes_down: true,
            code: "store_failed",
        },
    ];
    for r in rejections {
        let v1 = sign(&bundle("v1", &good, None), 1);
        let (p, reg) = serve(v1);
        let id1 = activated(block_on(sync(&p, &rules(), &settings(&[]), false)));
        let keys_before = p.kv_keys();
        let history_before = p.kv_text(HISTORY_KEY);
        {
            let mut reg = reg.borrow_mut();
            reg.bundle = r.bundle;
            reg.mode = r.mode;
        }
        p.set_kv_writes_down(r.writes_down);
        p.take_logs();
        let err = block_on(sync(&p, &rules(), &settings(&r.vars), false)).expect_err(r.name);
        assert_eq!(err.code(), r.code, "{}: {err}", r.name);
        if r.code == "config_invalid" {
            assert_eq!(
                err.errors.len(),
                2,
                "{}: every config error: {err:?}",
                r.name
            );
        }
        p.set_kv_writes_down(false);
        assert_eq!(
            pointer(&p).as_deref(),
            Some(id1.as_str()),
            "{}: v1 still active",
            r.name
        );
        assert_eq!(p.kv_text(HISTORY_KEY), history_before, "{}", r.name);
        let mut keys_after = p.kv_keys();
        keys_after.retain(|k| !keys_before.contains(k));
        assert!(
            keys_after.is_empty() || r.writes_down,
            "{}: nothing stored: {keys_after:?}",
            r.name
        );
        let logs = p.take_logs();
        assert!(
            logs.iter().any(|l| l.contains("\"registry_sync_failed\"")
                && l.contains(&format!("\"code\":\"{}\"", r.code))),
            "{}: {logs:?}",
            r.name
        );
        assert!(
            !logs.iter().any(|l| l.contains(TOKEN)),
            "{}: the token is never logged",
            r.name
        );
        if !r.writes_down {
            let st = block_on(status(&p)).expect("status");
            assert_eq!(st.result, Some(SyncResult::Failed), "{}", r.name);
            assert_eq!(
                st.error.as_ref().map(|e| e.code.as_str()),
                Some(r.code),
                "{}",
                r.name
            );
            assert_eq!(st.consecutive_failures, 1, "{}", r.name);
            assert!(st.next_attempt_ms.is_some(), "{}", r.name);
        }
    }
}

/// (name, bundle, settings overrides, verified key id or error code)
type KeyCase = (
    &'static str,
    Vec<u8>,
    Vec<(&'static str, String)>,
    Result<Option<String>, &'static str>,
);

#[test]
fn unsigned_only_when_allowed_and_two_keys_for_rotation() {
    let good = config("http://10.0.0.1");
    let cases: Vec<KeyCase> = vec![
        (
            // Stripping a signed bundle's trailer must not make it acceptable.
            "unsigned, allowed, but a key is configured: a signature is required",
            bundle("u", &good, None),
            vec![("EDGEGATE_REGISTRY_ALLOW_UNSIGNED", "true".into())],
            Err("bundle_unsigned"),
        ),
        (
            "unsigned, allowed, no keys",
            bundle("u", &good, None),
            vec![
                ("EDGEGATE_REGISTRY_ALLOW_UNSIGNED", "true".into()),
                ("EDGEGATE_REGISTRY_KEYS", String::new()),
            ],
            Ok(None),
        ),
        (
            "signed, unsigned allowed: still verified",
            sign(&bundle("s", &good, None), 1),
            vec![("EDGEGATE_REGISTRY_ALLOW_UNSIGNED", "true".into())],
            Ok(Some(key(1).2)),
        ),
        (
            "rotation: new key",
            sign(&bundle("r", &good, None), 2),
            vec![(
                "EDGEGATE_REGISTRY_KEYS",
                format!("{},{}", key(1).1, key(2).1),
            )],
            Ok(Some(key(2).2)),
        ),
        (
            "rotation: old key",
            sign(&bundle("r", &good, None), 1),
            vec![(
                "EDGEGATE_REGISTRY_KEYS",
                format!("{},{}", key(1).1, key(2).1),
            )],
            Ok(Some(key(1).2)),
        ),
        (
            "signed by both",
            sign(&sign(&bundle("r", &good, None), 1), 2),
            vec![("EDGEGATE_REGISTRY_KEYS", key(2).1)],
            Ok(Some(key(2).2)),
        ),
        (
            "old key removed after rotation",
            sign(&bundle("r", &good, None), 1),
            vec![("EDGEGATE_REGISTRY_KEYS", key(2).1)],
            Err("bundle_unknown_key"),
        ),
        (
            "unsigned, not allowed",
            bundle("u", &good, None),
            vec![],
            Err("bundle_unsigned"),
        ),
    ];
    for (name, b, vars, want) in cases {
        let (p, _) = serve(b);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match (block_on(sync(&p, &rules(), &settings(&vars), false)), want) {
            (Ok(SyncOutcome::Activated { key_id, .. }), Ok(want)) => {
                assert_eq!(key_id, want, "{name}")
            }
            (Err(e), Err(code)) => assert_eq!(e.code(), code, "{name}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
    // Settings that would silently weaken the sync are errors, never an unsigned sync.
    let bad = RegistrySettings::from_vars(|n| match n {
        "EDGEGATE_REGISTRY_URL" => Some("https://registry.example/bundle".into()),
        "EDGEGATE_REGISTRY_KEYS" => Some("ed25519:not-a-key".into()),
        "EDGEGATE_REGISTRY_ALLOW_UNSIGNED" => Some("true".into()),
        _ => None,
    });
    assert_eq!(bad.expect_err("bad key").variable, "EDGEGATE_REGISTRY_KEYS");
}

#[test]
fn backoff_between_ticks_and_a_forced_sync_ignores_it() {
    let (p, reg) = serve(sign(&bundle("v1", &config("http://10.0.0.1"), None), 1));
    let s = settings(&[("EDGEGATE_REGISTRY_BACKOFF_MS", "60000")]);
    activated(block_on(sync(&p, &rules(), &s, false)));
    reg.borrow_mut().mode = Mode::Refused;
    reg.borrow_mut().bundle = sign(&bundle("v2", &config("http://10.0.0.2"), None), 1);
    let mut attempts = Vec::new();
    // Ticks every 60 s; failures back off 1, 2, 4 ticks.
    for tick in 0..8 {
        let before = reg.borrow().requests.len();
        let out = block_on(sync(&p, &rules(), &s, false));
        let tried = reg.borrow().requests.len() > before;
        attempts.push(tried);
        match out {
            Err(e) => assert!(
                tried && e.code() == "registry_unreachable",
                "tick {tick}: {e}"
            ),
            Ok(SyncOutcome::Skipped { .. }) => assert!(!tried),
            other => panic!("tick {tick}: {other:?}"),
        }
        p.advance(60_000);
    }
    assert_eq!(
        attempts,
        [true, true, false, true, false, false, false, true]
    );
    assert_eq!(
        block_on(status(&p)).expect("status").consecutive_failures,
        4
    );
    // A forced sync (admin "sync now") ignores the backoff.
    reg.borrow_mut().mode = Mode::Up;
    assert!(matches!(
        block_on(sync(&p, &rules(), &s, false)),
        Ok(SyncOutcome::Skipped { .. })
    ));
    activated(block_on(sync(&p, &rules(), &s, true)));
    let st = block_on(status(&p)).expect("status");
    assert_eq!(
        (st.consecutive_failures, st.next_attempt_ms, st.error),
        (0, None, None)
    );
    assert!(matches!(
        block_on(sync(&p, &rules(), &s, false)),
        Ok(SyncOutcome::NotModified)
    ));
}

#[test]
fn retention_deletes_old_versions_and_only_unreferenced_shards() {
    let s1 = snapshot("s1");
    let s2 = snapshot("s2");
    let s3 = snapshot("s3");
    let releases = [("r1", &s1), ("r2", &s1), ("r3", &s2), ("r4", &s3)];
    let (p, reg) = serve(Vec::new());
    let s = settings(&[("EDGEGATE_KEEP_VERSIONS", "2")]);
    let mut ids = Vec::new();
    let sha = |b: &[u8]| -> String {
        let d = decode(b).expect("bundle");
        let doc: Value = serde_json::from_str(d.config).expect("json");
        doc["snapshot"]["sha256"].as_str().expect("sha").to_string()
    };
    let mut shas = Vec::new();
    for (label, snap) in releases {
        let b = sign(&bundle(label, &config("http://10.0.0.1"), Some(snap)), 1);
        shas.push(sha(&b));
        reg.borrow_mut().bundle = b;
        ids.push(activated(block_on(sync(&p, &rules(), &s, true))));
        p.advance(60_000);
    }
    let has_shards = |sha: &str| {
        p.kv_keys()
            .iter()
            .any(|k| k.starts_with(&format!("snapshot:{sha}:")))
    };
    let h = block_on(history(&p)).expect("history");
    assert_eq!(
        h.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [ids[3].clone(), ids[2].clone()]
    );
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(p.kv_text(&version_key(id)).is_some(), i >= 2, "version {i}");
    }
    assert!(
        !has_shards(&shas[0]),
        "s1: no retained version references it"
    );
    assert!(has_shards(&shas[2]) && has_shards(&shas[3]));

    // Shards that a retained version still uses survive; so do those of snapshot:manifest.
    let (p, reg) = serve(Vec::new());
    let legacy = json!({"shards": 1, "len": 1, "sha256": shas[0]}).to_string();
    p.kv_put(MANIFEST_KEY, &legacy);
    for (label, snap) in [("a", &s1), ("b", &s2), ("c", &s2), ("d", &s3)] {
        reg.borrow_mut().bundle = sign(&bundle(label, &config("http://10.0.0.1"), Some(snap)), 1);
        activated(block_on(sync(&p, &rules(), &s, true)));
        let has = |sha: &str| {
            p.kv_keys()
                .iter()
                .any(|k| k.starts_with(&format!("snapshot:{sha}:")))
        };
        assert!(has(&shas[0]), "{label}: s1 is named by snapshot:manifest");
        if label == "c" {
            assert!(has(&shas[2]), "b was removed but c uses s2");
        }
    }
}

#[test]
fn activate_and_rollback_only_stored_versions_that_compile() {
    let (p, reg) = serve(sign(
        &bundle("r1", &config("http://10.0.0.1"), Some(&snapshot("s1"))),
        1,
    ));
    let s = settings(&[]);
    let id1 = activated(block_on(sync(&p, &rules(), &s, false)));
    reg.borrow_mut().bundle = sign(&bundle("r2", &config("http://10.0.0.2"), None), 1);
    let id2 = activated(block_on(sync(&p, &rules(), &s, false)));
    let gw = Gateway::new(RuntimeSettings::default());
    block_on(gw.config_store().refresh(&p));

    let a = block_on(rollback(&p, &rules())).expect("rollback");
    assert_eq!(
        (a.version.as_str(), a.previous.as_deref(), a.source),
        (id1.as_str(), Some(id2.as_str()), Source::Rollback)
    );
    assert_eq!(pointer(&p).as_deref(), Some(id1.as_str()));
    assert_eq!(
        block_on(gw.config_store().refresh(&p)),
        RefreshOutcome::Activated(id1.clone())
    );
    // The Registry still serves r2 with the same ETag: the rollback stays.
    assert_eq!(
        block_on(sync(&p, &rules(), &s, false)),
        Ok(SyncOutcome::NotModified)
    );
    assert_eq!(pointer(&p).as_deref(), Some(id1.as_str()));
    // Rolling back again returns to r2.
    assert_eq!(
        block_on(rollback(&p, &rules())).expect("rollback").version,
        id2
    );
    let a = block_on(activate(&p, &rules(), &id1, Source::Activate)).expect("activate");
    assert_eq!(
        (a.version.as_str(), a.source),
        (id1.as_str(), Source::Activate)
    );
    let h = block_on(history(&p)).expect("history");
    assert_eq!(h.entries[0].source, Source::Activate);
    assert_eq!(h.entries.len(), 2, "distinct versions");
    // Already active: nothing written.
    let writes = p.kv_writes();
    assert_eq!(
        block_on(activate(&p, &rules(), &id1, Source::Activate))
            .expect("noop")
            .previous
            .as_deref(),
        Some(id1.as_str())
    );
    assert_eq!(p.kv_writes(), writes);

    let code = |r: Result<_, edgegate_core::registry::RegistryError>| {
        r.map(|_: edgegate_core::registry::Activation| ())
            .expect_err("refused")
            .code
    };
    assert_eq!(
        code(block_on(activate(
            &p,
            &rules(),
            "0123456789abcdef",
            Source::Activate
        ))),
        "version_unknown"
    );
    // A stored document that no longer compiles, or a missing snapshot shard: not activated.
    p.kv_put(
        &version_key(&id2),
        r#"{"pools": {}, "apis": [], "extra": 1}"#,
    );
    assert_eq!(
        code(block_on(activate(&p, &rules(), &id2, Source::Activate))),
        "config_invalid"
    );
    p.kv_delete(&version_key(&id2));
    assert_eq!(
        code(block_on(activate(&p, &rules(), &id2, Source::Activate))),
        "version_missing"
    );
    let shard = p
        .kv_keys()
        .into_iter()
        .find(|k| k.starts_with("snapshot:"))
        .expect("a shard");
    p.kv_delete(&shard);
    block_on(activate(&p, &rules(), &id2, Source::Activate)).expect_err("v2 is gone");
    assert_eq!(pointer(&p).as_deref(), Some(id1.as_str()));
    p.kv_put(POINTER_KEY, &id2);
    assert_eq!(
        code(block_on(activate(&p, &rules(), &id1, Source::Activate))),
        "snapshot_invalid"
    );
    assert_eq!(pointer(&p).as_deref(), Some(id2.as_str()), "unchanged");
    let json = serde_json::to_value(block_on(history(&p)).expect("h")).expect("json");
    assert!(json["entries"][0]["id"].is_string());
}

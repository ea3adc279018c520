//! The Registry snapshot: JSON model, binary codec, index lookups, shards, and corruption.

use edgegate_core::auth::CredentialStatus;
use edgegate_core::snapshot::codec::{checksum, FORMAT_VERSION, MAGIC};
use edgegate_core::snapshot::{
    decode, encode, from_json, generate, join, shard, validate, Cidr, CidrError, CredentialKind,
    Snapshot, SnapshotDoc, SnapshotError, SubscriptionStatus, KV_VALUE_LIMIT,
};
use std::net::IpAddr;

const KEY_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const FP_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn fixture_json() -> String {
    format!(
        r#"{{
  "version": "2025-01-01T00:00:00Z#42",
  "consumers": [
    {{"id": "c1", "name": "Acme", "status": "active"}},
    {{"id": "c2", "name": "Globex", "status": "suspended"}}
  ],
  "applications": [
    {{"id": "app1", "consumer_id": "c1", "name": "Acme web"}},
    {{"id": "app2", "consumer_id": "c2", "name": "Globex batch"}}
  ],
  "credentials": [
    {{"kind": "api_key", "key": "{KEY_A}", "consumer_id": "c1", "application_id": "app1",
      "status": "active", "expires_at": 1900000000, "scopes": ["read", "write"]}},
    {{"kind": "certificate", "key": "{FP_B}", "consumer_id": "c2", "status": "revoked"}}
  ],
  "plans": [
    {{"id": "gold", "tier": "gold", "rate_plan": "rp-5000"}},
    {{"id": "free", "tier": "free", "rate_plan": "rp-10"}}
  ],
  "subscriptions": [
    {{"id": "s1", "application_id": "app1", "api": "orders", "versions": ["v1", "v2"],
      "environment": "production", "plan_id": "gold", "status": "active",
      "valid_from": 1700000000, "valid_until": 1800000000, "scopes": ["orders:read"],
      "ip_allow": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"], "ip_deny": ["192.0.2.128/25"],
      "flags": {{"canary_group": "canary-a", "pii_access": true}},
      "metadata": {{"contract": "K-1", "cost_center": "cc-9"}}}},
    {{"id": "s2", "application_id": "app2", "api": "orders", "versions": ["*"],
      "environment": "sandbox", "plan_id": "free", "status": "suspended"}},
    {{"id": "s3", "application_id": "app1", "api": "orders", "versions": ["v3"],
      "environment": "production", "plan_id": "free", "status": "expired",
      "valid_from": 5}},
    {{"id": "s4", "application_id": "app1", "api": "payments", "versions": ["v1"],
      "environment": "production", "plan_id": "gold", "status": "active"}}
  ]
}}"#
    )
}

fn sorted(mut doc: SnapshotDoc) -> SnapshotDoc {
    doc.subscriptions.sort_by(|a, b| a.id.cmp(&b.id));
    doc
}

fn round_trip(doc: &SnapshotDoc) -> Snapshot {
    let snap = decode(&encode(doc)).unwrap_or_else(|e| panic!("decode: {e}"));
    assert_eq!(sorted(snap.to_doc()), sorted(doc.clone()));
    snap
}

// === round trip and lookups ===

#[test]
fn json_round_trip_and_lookups_answer_what_the_json_says() {
    let doc = from_json(&fixture_json()).unwrap_or_else(|e| panic!("{e}"));
    let snap = round_trip(&doc);
    assert_eq!(snap.version(), "2025-01-01T00:00:00Z#42");
    let len = snap.len();
    assert_eq!(
        (
            len.consumers,
            len.applications,
            len.credentials,
            len.plans,
            len.subscriptions
        ),
        (2, 2, 2, 2, 4)
    );

    let ids = |app: &str, api: &str, env: &str| -> Vec<String> {
        snap.subscriptions_for(app, api, env)
            .map(|s| s.id().to_string())
            .collect()
    };
    // (application, api, environment) → subscription ids, in the Registry's order.
    let table: &[(&str, &str, &str, &[&str])] = &[
        ("app1", "orders", "production", &["s1", "s3"]),
        ("app1", "payments", "production", &["s4"]),
        ("app2", "orders", "sandbox", &["s2"]),
        ("app2", "orders", "production", &[]),
        ("app1", "orders", "sandbox", &[]),
        ("app3", "orders", "production", &[]),
        ("", "", "", &[]),
        // No confusion between concatenations of the three parts.
        ("app1orders", "", "production", &[]),
    ];
    for (app, api, env, want) in table {
        assert_eq!(ids(app, api, env), *want, "{app} {api} {env}");
    }

    let s1 = snap.subscription("s1").expect("s1");
    assert_eq!(s1.to_model(), doc.subscriptions[0]);
    assert!(s1.covers_version("v2") && !s1.covers_version("v3"));
    assert_eq!(s1.plan().map(|p| p.tier()), Some("gold"));
    assert_eq!(s1.metadata_get("cost_center"), Some("cc-9"));
    assert_eq!(s1.metadata_get("nope"), None);
    assert_eq!(s1.canary_group(), Some("canary-a"));
    assert!(s1.pii_access());
    assert_eq!(
        (s1.valid_from(), s1.valid_until()),
        (Some(1_700_000_000), Some(1_800_000_000))
    );
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert!(s1
        .ip_allow()
        .iter()
        .any(|c| c.contains(ip("2001:db8:1::5"))));
    assert!(s1.ip_deny().iter().any(|c| c.contains(ip("192.0.2.200"))));
    assert!(!s1.ip_deny().iter().any(|c| c.contains(ip("192.0.2.1"))));
    let s2 = snap.subscription("s2").expect("s2");
    assert!(s2.covers_version("v9"));
    assert_eq!(s2.status(), SubscriptionStatus::Suspended);
    assert_eq!(
        (s2.valid_from(), s2.canary_group(), s2.pii_access()),
        (None, None, false)
    );
    assert_eq!(
        snap.subscription("s3").and_then(|s| s.valid_from()),
        Some(5)
    );

    let key = snap.credential(CredentialKind::ApiKey, KEY_A).expect("key");
    assert_eq!(
        (
            key.consumer_id(),
            key.application_id(),
            key.status(),
            key.expires_at()
        ),
        (
            "c1",
            Some("app1"),
            CredentialStatus::Active,
            Some(1_900_000_000)
        )
    );
    assert_eq!(key.scopes().collect::<Vec<_>>(), ["read", "write"]);
    let cert = snap
        .credential(CredentialKind::Certificate, FP_B)
        .expect("cert");
    assert_eq!(
        (cert.application_id(), cert.status()),
        (None, CredentialStatus::Revoked)
    );
    // The kind is part of the key.
    assert!(snap
        .credential(CredentialKind::Certificate, KEY_A)
        .is_none());
    assert!(snap.credential(CredentialKind::ApiKey, FP_B).is_none());

    assert_eq!(snap.consumer("c2").map(|c| c.name()), Some("Globex"));
    let app = snap.application("app1").expect("app1");
    assert_eq!(app.consumer().map(|c| c.id()), Some("c1"));
    assert_eq!(snap.plan("free").map(|p| p.rate_plan()), Some("rp-10"));
    assert!(snap.consumer("c3").is_none() && snap.application("").is_none());
    assert!(snap.plan("platinum").is_none() && snap.subscription("s9").is_none());
}

#[test]
fn empty_and_generated_documents_round_trip() {
    let empty = SnapshotDoc {
        version: String::new(),
        consumers: vec![],
        applications: vec![],
        credentials: vec![],
        plans: vec![],
        subscriptions: vec![],
    };
    let snap = round_trip(&empty);
    assert!(snap.is_empty());
    assert_eq!(snap.subscriptions_for("a", "b", "c").len(), 0);
    assert!(snap.consumer("x").is_none());

    for (n, seed) in [(1, 0), (10, 1), (1_000, 7)] {
        let doc = generate(n, seed);
        assert_eq!(doc, generate(n, seed), "deterministic");
        validate(&doc).unwrap_or_else(|e| panic!("generated document invalid: {e}"));
        let json = serde_json::to_string(&doc).expect("json");
        assert_eq!(from_json(&json).expect("parses"), doc);
        let snap = round_trip(&doc);
        for s in &doc.subscriptions {
            let found = snap
                .subscriptions_for(&s.application_id, &s.api, &s.environment)
                .find(|v| v.id() == s.id)
                .map(|v| v.to_model());
            assert_eq!(found.as_ref(), Some(s));
        }
        for c in &doc.credentials {
            assert_eq!(
                snap.credential(c.kind, &c.key)
                    .map(|v| v.to_model())
                    .as_ref(),
                Some(c)
            );
        }
    }
}

// === JSON errors ===

#[test]
fn json_errors_carry_their_path() {
    let base: serde_json::Value = serde_json::from_str(&fixture_json()).expect("json");
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "unknown field",
            |d| {
                d["subscriptions"][1]["colour"] = "red".into();
            },
            "$.subscriptions[1].colour",
        ),
        (
            "bad CIDR",
            |d| {
                d["subscriptions"][0]["ip_allow"][1] = "2001:db8::/129".into();
            },
            "$.subscriptions[0].ip_allow[1]",
        ),
        (
            "bad status",
            |d| {
                d["subscriptions"][2]["status"] = "paused".into();
            },
            "$.subscriptions[2].status",
        ),
        (
            "dangling plan",
            |d| {
                d["subscriptions"][3]["plan_id"] = "platinum".into();
            },
            "$.subscriptions[3].plan_id",
        ),
        (
            "dangling application",
            |d| {
                d["subscriptions"][3]["application_id"] = "app9".into();
            },
            "$.subscriptions[3].application_id",
        ),
        (
            "duplicate id",
            |d| {
                d["subscriptions"][3]["id"] = "s1".into();
            },
            "$.subscriptions[3].id",
        ),
        (
            "empty versions",
            |d| {
                d["subscriptions"][3]["versions"] = serde_json::json!([]);
            },
            "$.subscriptions[3].versions",
        ),
        (
            "empty window",
            |d| {
                d["subscriptions"][0]["valid_until"] = 1_700_000_000.into();
            },
            "$.subscriptions[0].valid_until",
        ),
        (
            "upper-case key",
            |d| {
                d["credentials"][0]["key"] = KEY_A.to_uppercase().into();
            },
            "$.credentials[0].key",
        ),
        (
            "short key",
            |d| {
                d["credentials"][0]["key"] = "abc".into();
            },
            "$.credentials[0].key",
        ),
        (
            "duplicate key",
            |d| {
                d["credentials"][1]["kind"] = "api_key".into();
                d["credentials"][1]["key"] = KEY_A.into();
            },
            "$.credentials[1].key",
        ),
        (
            "foreign application",
            |d| {
                d["credentials"][0]["application_id"] = "app2".into();
            },
            "$.credentials[0].application_id",
        ),
        (
            "dangling consumer",
            |d| {
                d["applications"][1]["consumer_id"] = "c7".into();
            },
            "$.applications[1].consumer_id",
        ),
        (
            "missing version",
            |d| {
                d.as_object_mut().map(|o| o.remove("version"));
            },
            "$",
        ),
    ];
    for (name, edit, path) in cases {
        let mut doc = base.clone();
        edit(&mut doc);
        let errs = from_json(&doc.to_string()).expect_err(name);
        assert!(
            errs.0.iter().any(|e| e.path == *path),
            "{name}: expected an error at {path}, got {errs}"
        );
    }
    assert_eq!(from_json("{").expect_err("eof").0[0].path, "$");
    assert!(
        from_json(&format!("{} {{}}", fixture_json())).is_err(),
        "trailing JSON"
    );
}

// === CIDR ===

#[test]
fn cidr_parsing() {
    let ok: &[(&str, &str)] = &[
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.0.2.128/25", "192.0.2.128/25"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::/0", "::/0"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:DB8:0:0::/64", "2001:db8::/64"),
        ("fe80::1/128", "fe80::1/128"),
    ];
    for (input, shown) in ok {
        let c: Cidr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(c.to_string(), *shown, "{input}");
    }
    let bad: &[(&str, CidrError)] = &[
        ("10.0.0.0/33", CidrError::BadPrefix),
        ("2001:db8::/129", CidrError::BadPrefix),
        ("10.0.0.0/", CidrError::BadPrefix),
        ("10.0.0.0/+8", CidrError::BadPrefix),
        ("10.0.0.0/-1", CidrError::BadPrefix),
        ("10.0.0.0/08x", CidrError::BadPrefix),
        ("10.0.0.0/0008", CidrError::BadPrefix),
        ("10.0.0.0/8/8", CidrError::BadPrefix),
        ("10.0.0.1/8", CidrError::HostBitsSet),
        ("2001:db8::1/64", CidrError::HostBitsSet),
        ("10.0.0/8", CidrError::BadAddress),
        ("", CidrError::BadAddress),
        ("/8", CidrError::BadAddress),
        ("example.com/8", CidrError::BadAddress),
        ("[::1]/128", CidrError::BadAddress),
    ];
    for (input, want) in bad {
        assert_eq!(input.parse::<Cidr>().as_ref(), Err(want), "{input}");
    }
    let contains: &[(&str, &str, bool)] = &[
        ("10.0.0.0/8", "10.255.1.2", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("::/0", "10.0.0.1", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::", false),
        ("192.0.2.7", "192.0.2.7", true),
        ("192.0.2.7", "192.0.2.8", false),
    ];
    for (net, ip, want) in contains {
        let c: Cidr = net.parse().expect("cidr");
        assert_eq!(c.contains(ip.parse().expect("ip")), *want, "{net} ∋ {ip}");
    }
}

// === corruption ===

fn fixture_bytes() -> Vec<u8> {
    encode(&from_json(&fixture_json()).expect("fixture"))
}

/// Replaces the checksum trailer so a change reaches the parser.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 8;
    bytes.truncate(n);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

#[test]
fn truncated_or_flipped_bytes_are_refused() {
    for bytes in [fixture_bytes(), encode(&generate(300, 3))] {
        for k in 0..50 {
            let cut = bytes.len() * k / 50;
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let step = (bytes.len() / 200).max(1);
        for i in (0..bytes.len()).step_by(step) {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                assert!(decode(&b).is_err(), "flip {mask:#x} at {i}");
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

#[test]
fn resealed_corruption_never_panics() {
    // With a valid checksum the parser sees the damage: it may decode something else, but
    // must never panic, and whatever it accepts must answer lookups.
    let bytes = fixture_bytes();
    let mut accepted = 0;
    for i in 0..bytes.len() - 8 {
        for value in [0x00u8, 0x01, 0x20, 0x7f, 0x80, 0xa1, 0xff] {
            let mut b = bytes.clone();
            b[i] = value;
            if let Ok(snap) = decode(&reseal(b)) {
                accepted += 1;
                let _ = snap.to_doc();
                let _ = snap
                    .subscriptions_for("app1", "orders", "production")
                    .count();
            }
        }
        let mut cut = bytes[..i].to_vec();
        cut.extend_from_slice(&checksum(&bytes[..i]).to_le_bytes());
        assert!(
            decode(&cut).is_err() || i == bytes.len() - 8,
            "resealed cut at {i}"
        );
    }
    assert!(
        accepted > 0,
        "some changes (a string's letters) are still valid snapshots"
    );
}

/// `bytes` with byte `at` set to `value` and the checksum made to match again.
fn patched(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    bytes[at] = value;
    reseal(bytes)
}

fn v(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// A hand-built snapshot: header, version "v", the string table, then `sections` as given.
fn build(strings: &[&str], sections: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    v(&mut out, 1);
    out.push(b'v');
    v(&mut out, strings.len() as u64);
    for s in strings {
        v(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(sections);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

const STRINGS: &[&str] = &["s", "a", "api", "prod", "p", "t", "r", "v1", "s2", "b"];
/// No consumers, applications or credentials; plan 4/5/6.
const PLANS: [u8; 7] = [0, 0, 0, 1, 4, 5, 6];

/// PLANS, then the subscriptions given as raw records. Records are written here as id, app,
/// api, env, plan, status, flags, …: the flags byte (index 6) is moved first, where the
/// format has it (all ids here are one-byte string ids).
fn subs(records: &[&[u8]]) -> Vec<u8> {
    let mut out = PLANS.to_vec();
    v(&mut out, records.len() as u64);
    for r in records {
        let mut r = r.to_vec();
        if r.len() > 6 {
            let flags = r.remove(6);
            r.insert(0, flags);
        }
        out.extend_from_slice(&r);
    }
    out
}

// id, app, api, env, plan, status, flags, versions [v1], scopes [], allow, deny, metadata.
const SUB: &[u8] = &[0, 1, 2, 3, 4, 0, 0, 1, 7, 0, 0, 0, 0];

#[test]
fn hand_built_structures_are_checked() {
    type Check = fn(&SnapshotError) -> bool;
    let ok = build(STRINGS, &subs(&[SUB]));
    let snap = decode(&ok).unwrap_or_else(|e| panic!("hand-built: {e}"));
    assert_eq!(snap.subscriptions_for("a", "api", "prod").len(), 1);
    // A CIDR stores only the bytes its prefix covers: 10.0.0.0/8 is [8, 10]; ::/0 is [33].
    let cidrs = build(
        STRINGS,
        &subs(&[&[
            0,
            1,
            2,
            3,
            4,
            0,
            0,
            1,
            7,
            0,
            2,
            8,
            10,
            33,
            1,
            33 + 32,
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
        ]]),
    );
    let snap = decode(&cidrs).unwrap_or_else(|e| panic!("cidrs: {e}"));
    let s = snap.subscription("s").expect("s");
    let shown: Vec<String> = s
        .ip_allow()
        .iter()
        .chain(s.ip_deny())
        .map(|c| c.to_string())
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "::/0", "2001:db8::/32"]);

    let mut bad_magic = ok.clone();
    bad_magic[0] = b'X';
    let mut wrong_version = ok.clone();
    wrong_version[4] = FORMAT_VERSION + 1;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty", vec![], |e| {
            matches!(e, SnapshotError::Truncated { .. })
        }),
        ("magic only", MAGIC.to_vec(), |e| {
            matches!(e, SnapshotError::Truncated { .. })
        }),
        ("bad magic", bad_magic, |e| *e == SnapshotError::BadMagic),
        ("json", b"{\"version\":1}".to_vec(), |e| {
            *e == SnapshotError::BadMagic
        }),
        ("wrong version", wrong_version, |e| {
            *e == SnapshotError::UnsupportedFormat {
                found: FORMAT_VERSION + 1,
            }
        }),
        (
            "string id out of range",
            build(STRINGS, &[0, 0, 0, 1, 4, 10, 6, 0]),
            |e| matches!(e, SnapshotError::StringIdOutOfRange { id: 10, .. }),
        ),
        (
            "huge string id",
            build(
                STRINGS,
                &[0, 0, 0, 1, 4, 0xff, 0xff, 0xff, 0xff, 0x7f, 6, 0],
            ),
            |e| matches!(e, SnapshotError::StringIdOutOfRange { .. }),
        ),
        (
            "overlong varint",
            build(
                STRINGS,
                &[
                    0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
            ),
            |e| matches!(e, SnapshotError::BadVarint { .. }),
        ),
        (
            "huge count",
            build(STRINGS, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            |e| {
                matches!(
                    e,
                    SnapshotError::TooLarge {
                        what: "consumers",
                        ..
                    }
                )
            },
        ),
        (
            "string longer than input",
            patched(build(&["ab"], &[0, 0, 0, 0, 0]), 8, 0x7f),
            |e| matches!(e, SnapshotError::Truncated { .. }),
        ),
        (
            "not UTF-8",
            patched(build(&["ab"], &[0, 0, 0, 0, 0]), 9, 0xff),
            |e| matches!(e, SnapshotError::BadUtf8 { at: 9 }),
        ),
        (
            "bad checksum",
            {
                let mut b = build(&["ab"], &[0, 0, 0, 0, 0]);
                b[9] = b'c';
                b
            },
            |e| matches!(e, SnapshotError::ChecksumMismatch),
        ),
        ("missing sections", build(STRINGS, &[0, 0]), |e| {
            matches!(e, SnapshotError::Truncated { .. })
        }),
        (
            "trailing bytes",
            build(STRINGS, &[PLANS.as_slice(), &[0, 0]].concat()),
            |e| matches!(e, SnapshotError::TrailingBytes { .. }),
        ),
        (
            "bad status",
            build(STRINGS, &subs(&[&[0, 1, 2, 3, 4, 3, 0, 1, 7, 0, 0, 0, 0]])),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadValue {
                        what: "subscription status",
                        value: 3,
                        ..
                    }
                )
            },
        ),
        (
            "unknown flag",
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 0x40, 1, 7, 0, 0, 0, 0]]),
            ),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadValue {
                        what: "subscription flags",
                        ..
                    }
                )
            },
        ),
        (
            "no versions",
            build(STRINGS, &subs(&[&[0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0]])),
            |e| matches!(e, SnapshotError::BadRecord { .. }),
        ),
        (
            "CIDR prefix too long",
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 0, 1, 7, 0, 1, 162, 0, 0]]),
            ),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadCidr {
                        reason: CidrError::BadPrefix,
                        ..
                    }
                )
            },
        ),
        (
            "CIDR host bits",
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 0, 1, 7, 0, 1, 4, 0xff, 0, 0]]),
            ),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadCidr {
                        reason: CidrError::HostBitsSet,
                        ..
                    }
                )
            },
        ),
        (
            "CIDR bytes missing",
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 0, 1, 7, 0, 1, 24, 10]]),
            ),
            |e| matches!(e, SnapshotError::Truncated { .. }),
        ),
        (
            "metadata keys out of order",
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 0, 1, 7, 0, 0, 0, 2, 5, 1, 4, 1]]),
            ),
            |e| matches!(e, SnapshotError::BadRecord { .. }),
        ),
        (
            "duplicate subscription",
            build(STRINGS, &subs(&[SUB, SUB])),
            |e| {
                matches!(
                    e,
                    SnapshotError::Duplicate {
                        what: "subscription",
                        ..
                    }
                )
            },
        ),
        (
            "duplicate plan",
            build(STRINGS, &[0, 0, 0, 2, 4, 5, 6, 4, 6, 5, 0]),
            |e| matches!(e, SnapshotError::Duplicate { what: "plan", .. }),
        ),
        (
            "group written twice",
            build(
                STRINGS,
                &subs(&[
                    SUB,
                    &[8, 9, 2, 3, 4, 0, 0, 1, 7, 0, 0, 0, 0],
                    &[5, 1, 2, 3, 4, 0, 0, 1, 7, 0, 0, 0, 0],
                ]),
            ),
            |e| matches!(e, SnapshotError::BadRecord { .. }),
        ),
        (
            "validity time before 1970",
            // flags 4 (valid_from), then zigzag(-1) = 1.
            build(
                STRINGS,
                &subs(&[&[0, 1, 2, 3, 4, 0, 4, 1, 1, 7, 0, 0, 0, 0]]),
            ),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadRecord {
                        what: "validity time outside 1970..2106",
                        ..
                    }
                )
            },
        ),
        (
            "credential key not a SHA-256",
            // 0 consumers, 0 applications, 1 credential: kind 0, key tag 1 "ab", …
            build(STRINGS, &[0, 0, 1, 0, 1, 2, b'a', b'b', 0, 0, 0, 0, 0, 0]),
            |e| matches!(e, SnapshotError::BadRecord { .. }),
        ),
        (
            "bad credential kind",
            build(STRINGS, &[0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0]),
            |e| {
                matches!(
                    e,
                    SnapshotError::BadValue {
                        what: "credential kind",
                        ..
                    }
                )
            },
        ),
    ];
    for (name, bytes, check) in &cases {
        match decode(bytes) {
            Ok(_) => panic!("{name}: decoded"),
            Err(e) => assert!(check(&e), "{name}: unexpected {e:?}"),
        }
    }
}

// === shards ===

#[test]
fn shards_join_back_and_tampering_is_refused() {
    let bytes = encode(&generate(500, 11));
    for limit in [
        1_000,
        4_096,
        bytes.len() - 1,
        bytes.len(),
        KV_VALUE_LIMIT,
        0,
    ] {
        let (manifest, parts) = shard(&bytes, limit);
        assert!(parts.iter().all(|p| p.len() <= limit.max(1)));
        assert_eq!(manifest.shards as usize, parts.len());
        let json = serde_json::to_string(&manifest).expect("manifest json");
        let manifest = serde_json::from_str(&json).expect("manifest back");
        let joined = join(&manifest, &parts).expect("join");
        assert_eq!(joined, bytes);
        decode(&joined).expect("decodes");
    }
    let (manifest, parts) = shard(&bytes, 1_000);
    assert_eq!(manifest.shards as usize, bytes.len().div_ceil(1_000));
    assert_eq!(
        manifest.shard_key("snapshot", 2),
        format!("snapshot:{}:2", manifest.sha256)
    );
    let mut owned: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    owned[1][10] ^= 1;
    assert_eq!(join(&manifest, &owned), Err(SnapshotError::ShardDigest));
    let mut swapped: Vec<&[u8]> = parts.clone();
    swapped.swap(0, 1);
    assert_eq!(join(&manifest, &swapped), Err(SnapshotError::ShardDigest));
    assert!(matches!(
        join(&manifest, &parts[1..]),
        Err(SnapshotError::ShardCount { .. })
    ));
    let mut short: Vec<&[u8]> = parts.clone();
    let last = short.len() - 1;
    short[last] = &short[last][1..];
    assert!(matches!(
        join(&manifest, &short),
        Err(SnapshotError::ShardLength { .. })
    ));
    let (empty, empty_parts) = shard(&[], 10);
    assert_eq!(join(&empty, &empty_parts), Ok(vec![]));
}

// === size ===

#[test]
fn a_large_generated_snapshot_decodes_and_answers() {
    // 100k in release (see bench/benches/snapshot.rs); fewer in debug to keep the suite fast.
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let doc = generate(n, 42);
    let bytes = encode(&doc);
    let snap = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.len().subscriptions, n);
    assert_eq!(snap.len().applications, n / 4);
    for i in (0..n).step_by(997) {
        let s = &doc.subscriptions[i];
        let got: Vec<_> = snap
            .subscriptions_for(&s.application_id, &s.api, &s.environment)
            .filter(|v| v.id() == s.id)
            .map(|v| v.to_model())
            .collect();
        assert_eq!(got, std::slice::from_ref(s));
        let app = snap.application(&s.application_id).expect("application");
        assert!(snap.consumer(app.consumer_id()).is_some());
        assert!(snap.plan(&s.plan_id).is_some());
    }
    for c in doc.credentials.iter().step_by(101) {
        assert_eq!(
            snap.credential(c.kind, &c.key)
                .map(|v| v.to_model())
                .as_ref(),
            Some(c)
        );
    }
    let per_sub = snap.memory_bytes() / n;
    eprintln!(
        "{n} subscriptions: {} bytes encoded, {} bytes in memory ({per_sub} per subscription)",
        bytes.len(),
        snap.memory_bytes()
    );
    // A regression ceiling, not the issue's target (16 MB for 100k = 160 bytes per
    // subscription, everything included): with UUID ids this layout needs about 210.
    assert!(per_sub <= 240, "{per_sub} bytes per subscription");
}

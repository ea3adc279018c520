//! `keygen`, `bundle`, `sign`, `verify` and `push`: a bundle made by the CLI passes the
//! gateway's own checks (decode, signature, snapshot, config), signing never changes the version
//! id, tampering is caught, and `push` writes the values in the gateway's KV layout with the
//! pointer last — against a recording store and against the real local wrangler.

use edgegate_cli::bundle::{self, Checked};
use edgegate_cli::keys::SigningKey;
use edgegate_cli::push::{self, History, KvStore, Source, ACTIVE_KEY, HISTORY_KEY};
use edgegate_cli::validate::Platform;
use edgegate_cli::{run_with, CliError, Env, EXIT_INVALID, EXIT_OK};
use edgegate_core::bundle::{decode, PublicKeyEntry};
use edgegate_core::snapshot::{self, generate, ShardManifest, SHARD_PREFIX};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("edgegate-cli-b-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8").to_string()
    }

    fn file(&self, name: &str, text: &str) -> String {
        std::fs::write(self.0.join(name), text).expect("write");
        self.path(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env() -> Env {
    Env {
        now_ms: 1_795_000_000_000,
        ..Env::default()
    }
}

fn cli_env(env: &Env, args: &[&str]) -> (i32, String, String) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err, env);
    (
        code,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

fn cli(args: &[&str]) -> (i32, String, String) {
    cli_env(&env(), args)
}

const CONFIG: &str = "tests/golden/validate/valid-demo.json";

/// A key pair via `keygen`; returns (private file, public file).
fn keygen(s: &Scratch, name: &str) -> (String, String) {
    let (code, out, err) = cli(&["keygen", "--out", &s.path(name)]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("ed25519:"), "{out}");
    (
        s.path(&format!("{name}.key")),
        s.path(&format!("{name}.pub")),
    )
}

/// A bundle of the demo config and a generated snapshot of `subs` subscriptions.
fn make_bundle(s: &Scratch, name: &str, subs: usize, shard_bytes: &str) -> String {
    let snap = s.file(
        &format!("{name}-snap.json"),
        &serde_json::to_string(&generate(subs, 3)).expect("json"),
    );
    let out = s.path(&format!("{name}.egb"));
    let (code, stdout, err) = cli(&[
        "bundle",
        "--config",
        CONFIG,
        "--snapshot",
        &snap,
        "--label",
        name,
        "--out",
        &out,
        "--shard-bytes",
        shard_bytes,
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(stdout.contains("unsigned"), "{stdout}");
    out
}

#[test]
fn keygen_writes_a_private_jwk_0600_and_the_public_key_text() {
    let s = Scratch::new("keygen");
    let (private, public) = keygen(&s, "registry");
    let key = SigningKey::from_jwk(&std::fs::read_to_string(&private).expect("key")).expect("jwk");
    let pubtext = std::fs::read_to_string(&public).expect("pub");
    assert_eq!(
        PublicKeyEntry::parse(pubtext.trim()).expect("parses"),
        key.public
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // Never overwrites a key.
    let (code, _, err) = cli(&["keygen", "--out", &s.path("registry")]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        std::fs::read_to_string(&public).expect("pub"),
        pubtext,
        "unchanged"
    );
    // A damaged key file is refused.
    let mut jwk: Value = serde_json::from_str(&key.to_jwk()).expect("json");
    jwk["kid"] = json!("0000000000000000");
    assert!(SigningKey::from_jwk(&jwk.to_string()).is_err());
    assert!(SigningKey::from_jwk(&pubtext).is_err());
}

#[test]
fn a_bundle_embeds_the_snapshot_manifest_and_signing_keeps_the_version_id() {
    let s = Scratch::new("bundle");
    let egb = make_bundle(&s, "r1", 200, "4096");
    let bytes = std::fs::read(&egb).expect("bundle");
    let decoded = decode(&bytes).expect("decodes");
    assert_eq!(decoded.header.label, "r1");
    assert_eq!(decoded.header.created_at_ms, env().now_ms);
    assert!(decoded.shards.len() > 1, "sharded at 4096 bytes");
    let config: Value = serde_json::from_str(decoded.config).expect("config JSON");
    let manifest: ShardManifest =
        serde_json::from_value(config["snapshot"].clone()).expect("embedded manifest");
    let joined = snapshot::join(&manifest, &decoded.shards).expect("shards join");
    assert_eq!(
        snapshot::decode(&joined)
            .expect("decodes")
            .len()
            .subscriptions,
        200
    );
    let id = decoded.version_id();

    let (k1, p1) = keygen(&s, "k1");
    let (k2, p2) = keygen(&s, "k2");
    let (code, _, err) = cli(&["verify", &egb, "--public-key", &p1]);
    assert_eq!(code, EXIT_INVALID, "unsigned refused: {err}");
    assert!(err.contains("bundle_unsigned"), "{err}");
    let (code, out, _) = cli(&["verify", &egb, "--allow-unsigned"]);
    assert_eq!(code, EXIT_OK);
    assert!(out.contains(&id), "{out}");

    for key in [&k1, &k2, &k1] {
        let (code, out, err) = cli(&["sign", &egb, "--key", key]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.contains(&id), "the id does not change: {out}");
    }
    let signed = std::fs::read(&egb).expect("bundle");
    assert_eq!(decode(&signed).expect("decodes").signatures.len(), 2);
    for keys in [vec![&p1], vec![&p2], vec![&p1, &p2]] {
        let mut args = vec!["verify", egb.as_str()];
        for k in &keys {
            args.extend(["--public-key", k.as_str()]);
        }
        let (code, out, err) = cli(&args);
        assert_eq!(code, EXIT_OK, "{keys:?}: {err}");
        assert!(out.contains("signed by"), "{out}");
    }
    // Keys also come from $EDGEGATE_REGISTRY_KEYS, as the gateway reads them.
    let p2_text = std::fs::read_to_string(&p2).expect("pub");
    let with_keys = Env {
        registry_keys: Some(format!(" {} ,", p2_text.trim())),
        ..env()
    };
    assert_eq!(cli_env(&with_keys, &["verify", &egb]).0, EXIT_OK);
    let (_, p3) = keygen(&s, "k3");
    let (code, _, err) = cli(&["verify", &egb, "--public-key", &p3]);
    assert_eq!(code, EXIT_INVALID);
    assert!(err.contains("bundle_unknown_key"), "{err}");

    // One flipped byte anywhere in the signed part: refused.
    let end = decode(&signed).expect("decodes").signed_part.len();
    for at in [10, end / 2, end - 1] {
        let mut bad = signed.clone();
        bad[at] ^= 0x01;
        let path = s.path("bad.egb");
        std::fs::write(&path, &bad).expect("write");
        let (code, _, err) = cli(&["verify", &path, "--public-key", &p1]);
        assert_eq!(code, EXIT_INVALID, "byte {at}: {err}");
    }
}

#[test]
fn bundle_refuses_an_invalid_config_and_takes_csv_or_a_built_snapshot_dir() {
    let s = Scratch::new("inputs");
    let out = s.path("x.egb");
    let bad = "tests/golden/validate/invalid-many.json";
    let (code, _, err) = cli(&["bundle", "--config", bad, "--label", "x", "--out", &out]);
    assert_eq!(code, EXIT_INVALID);
    assert!(err.lines().all(|l| l.starts_with("$.")), "{err}");
    assert!(!Path::new(&out).exists(), "nothing written");
    let (code, _, err) = cli(&[
        "bundle",
        "--config",
        "tests/golden/validate/mtls-workers.json",
        "--label",
        "x",
        "--out",
        &out,
        "--platform",
        "spin",
    ]);
    assert_eq!(code, EXIT_INVALID, "{err}");
    assert!(!Path::new(&out).exists(), "nothing written");

    // A config that already names a snapshot cannot get another one.
    let mut named: Value =
        serde_json::from_str(&std::fs::read_to_string(CONFIG).expect("config")).expect("json");
    named["snapshot"] = json!({"shards": 1, "len": 3, "sha256": "00"});
    let named = s.file("named.json", &named.to_string());
    let (code, _, err) = cli(&["bundle", "--config", &named, "--label", "x", "--out", &out]);
    assert_eq!(code, EXIT_INVALID, "{err}");

    // CSV in, and a `snapshot build` directory in: the same snapshot bytes.
    let csv = s.file(
        "subs.csv",
        "subscription_id,application_id,consumer_id,api,versions,environment,plan_id,status\n\
         s1,web,acme,users,*,production,gold,active\n",
    );
    let (code, _, err) = cli(&[
        "bundle",
        "--config",
        CONFIG,
        "--snapshot",
        &csv,
        "--snapshot-version",
        "7",
        "--label",
        "csv",
        "--out",
        &out,
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let from_csv = std::fs::read(&out).expect("bundle");
    let dir = s.path("built");
    let (code, _, err) = cli(&[
        "snapshot",
        "build",
        &csv,
        "--snapshot-version",
        "7",
        "--out",
        &dir,
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let out2 = s.path("y.egb");
    let (code, _, err) = cli(&[
        "bundle",
        "--config",
        CONFIG,
        "--snapshot-dir",
        &dir,
        "--label",
        "csv",
        "--out",
        &out2,
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let from_dir = std::fs::read(&out2).expect("bundle");
    assert_eq!(
        from_csv, from_dir,
        "same inputs, same bundle, same version id"
    );
}

/// A KV store that records every write in order.
#[derive(Default)]
struct Recorder {
    values: std::collections::BTreeMap<String, Vec<u8>>,
    writes: Vec<String>,
}

impl KvStore for Recorder {
    fn get_text(&mut self, key: &str) -> Result<Option<String>, CliError> {
        Ok(self
            .values
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned()))
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), CliError> {
        self.writes.push(key.to_string());
        self.values.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn put_text_many(&mut self, entries: &[(String, String)]) -> Result<(), CliError> {
        for (k, v) in entries {
            self.put(k, v.as_bytes())?;
        }
        Ok(())
    }
    fn delete_many(&mut self, keys: &[String]) -> Result<(), CliError> {
        for k in keys {
            self.writes.push(format!("delete {k}"));
            self.values.remove(k);
        }
        Ok(())
    }
}

fn checked(bytes: &[u8]) -> Checked<'_> {
    bundle::check(bytes, &[], true, Platform::Workers).expect("checks")
}

#[test]
fn push_writes_shards_then_the_version_then_history_and_the_pointer_last() {
    let s = Scratch::new("store");
    let mut kv = Recorder::default();
    let mut ids = Vec::new();
    let mut manifests = Vec::new();
    for (i, subs) in [50usize, 60, 70].iter().enumerate() {
        let egb = make_bundle(&s, &format!("r{i}"), *subs, "1024");
        let bytes = std::fs::read(&egb).expect("bundle");
        let c = checked(&bytes);
        kv.writes.clear();
        let pushed = push::store(&mut kv, &c, 2, 1000 + i as u64).expect("stores");
        let m = c.manifest.clone().expect("manifest");
        let n = m.shards as usize;
        let expect: Vec<String> = (0..m.shards)
            .map(|j| m.shard_key(SHARD_PREFIX, j))
            .chain([
                format!("config:version:{}", c.id),
                HISTORY_KEY.to_string(),
                ACTIVE_KEY.to_string(),
            ])
            .collect();
        assert_eq!(kv.writes[..n + 3], expect[..], "push {i}");
        assert_eq!(kv.values[ACTIVE_KEY], c.id.as_bytes());
        for j in 0..m.shards {
            assert_eq!(
                kv.values[&m.shard_key(SHARD_PREFIX, j)],
                c.decoded.shards[j as usize],
                "shard bytes"
            );
        }
        ids.push(c.id.clone());
        manifests.push(m);
        if i == 2 {
            // Keep 2: the first version and its shards went, after the pointer write.
            assert_eq!(pushed.dropped, [ids[0].clone()]);
            assert!(kv.writes[n + 3..].iter().all(|w| w.starts_with("delete ")));
            assert!(!kv
                .values
                .contains_key(&format!("config:version:{}", ids[0])));
            assert!(!kv
                .values
                .contains_key(&manifests[0].shard_key(SHARD_PREFIX, 0)));
            assert!(kv
                .values
                .contains_key(&manifests[1].shard_key(SHARD_PREFIX, 0)));
        }
    }
    let history: History = serde_json::from_slice(&kv.values[HISTORY_KEY]).expect("history JSON");
    let listed: Vec<&str> = history.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    assert!(history.entries.iter().all(|e| e.source == Source::Push));
    assert_eq!(history.entries[0].snapshot.as_ref(), Some(&manifests[2]));
    // The gateway's registry format: {"entries": [{id, label, created_at_ms, stored_at_ms,
    // activated_at_ms, source, key_id, snapshot}]}.
    let raw: Value = serde_json::from_slice(&kv.values[HISTORY_KEY]).expect("json");
    let keys: Vec<&str> = raw["entries"][0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "label",
        "created_at_ms",
        "stored_at_ms",
        "activated_at_ms",
        "source",
        "key_id",
        "snapshot",
    ] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }

    // A history the store holds but cannot parse is never overwritten.
    kv.values.insert(HISTORY_KEY.into(), b"{not json".to_vec());
    let egb = make_bundle(&s, "r9", 5, "1024");
    let bytes = std::fs::read(&egb).expect("bundle");
    let before = kv.values[ACTIVE_KEY].clone();
    assert!(push::store(&mut kv, &checked(&bytes), 2, 5).is_err());
    assert_eq!(kv.values[ACTIVE_KEY], before, "the pointer did not move");
}

#[test]
fn push_retention_is_the_gateways_rule_and_keeps_the_shards_snapshot_manifest_names() {
    // (name, snapshot:manifest names the first version's snapshot, its shards deleted)
    for (name, legacy, deleted) in [
        ("no snapshot:manifest", false, true),
        ("snapshot:manifest names it", true, false),
    ] {
        let s = Scratch::new("legacy");
        let mut kv = Recorder::default();
        let mut first: Option<(String, ShardManifest)> = None;
        for (i, subs) in [40usize, 45].iter().enumerate() {
            let egb = make_bundle(&s, &format!("l{i}"), *subs, "1024");
            let bytes = std::fs::read(&egb).expect("bundle");
            let c = checked(&bytes);
            let m = c.manifest.clone().expect("manifest");
            if i == 0 && legacy {
                kv.values.insert(
                    snapshot::MANIFEST_KEY.into(),
                    serde_json::to_vec(&m).expect("json"),
                );
            }
            let pushed = push::store(&mut kv, &c, 1, 10 + i as u64).expect("stores");
            match &first {
                None => first = Some((c.id.clone(), m)),
                Some((id, m0)) => {
                    assert_eq!(pushed.dropped, std::slice::from_ref(id), "{name}");
                    assert!(!kv.values.contains_key(&format!("config:version:{id}")));
                    let gone = !kv.values.contains_key(&m0.shard_key(SHARD_PREFIX, 0));
                    assert_eq!(gone, deleted, "{name}: {:?}", pushed.deleted);
                }
            }
        }
    }
}

#[test]
fn push_refuses_a_bundle_that_does_not_verify_before_touching_the_store() {
    let s = Scratch::new("refuse");
    let egb = make_bundle(&s, "r", 5, "1024");
    let state = s.path("state");
    // Unsigned without --allow-unsigned: refused before wrangler runs (a wrangler that cannot
    // start would be exit 1).
    let (code, _, err) = cli(&[
        "push",
        &egb,
        "--local",
        "--persist-to",
        &state,
        "--wrangler",
        "/nonexistent/wrangler",
    ]);
    assert_eq!(code, EXIT_INVALID, "{err}");
    assert!(err.contains("bundle_unsigned"), "{err}");
    // Neither --local nor --remote: a usage error.
    let (code, _, _) = cli(&["push", &egb, "--allow-unsigned"]);
    assert_eq!(code, EXIT_INVALID);
    // A wrangler that cannot run: exit 1, with the command named.
    let (code, _, err) = cli(&[
        "push",
        &egb,
        "--local",
        "--allow-unsigned",
        "--wrangler",
        "/nonexistent/wrangler",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/wrangler"), "{err}");
}

/// The repository's wrangler (installed by `npm ci`), or $EDGEGATE_WRANGLER.
fn wrangler() -> String {
    if let Ok(w) = std::env::var("EDGEGATE_WRANGLER") {
        return w;
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/wrangler");
    assert!(
        local.exists(),
        "{} is missing: run `npm ci` in the repository (scripts/test.sh does)",
        local.display()
    );
    local.to_str().expect("utf-8").to_string()
}

/// Reads a value back from wrangler's local KV.
fn kv_get(state: &str, key: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(wrangler())
        .args([
            "kv",
            "key",
            "get",
            key,
            "--binding",
            "EDGEGATE_CONFIG",
            "--local",
        ])
        .args(["--persist-to", state])
        .arg("--config")
        .arg(root.join("wrangler.toml"))
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("wrangler runs");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn push_into_the_real_local_wrangler_kv_reads_back() {
    let s = Scratch::new("wrangler");
    let (key, public) = keygen(&s, "reg");
    let state = s.path("state");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wrangler.toml");
    let config = config.to_str().expect("utf-8");
    let w = wrangler();
    let mut pushed = Vec::new();
    for name in ["first", "second"] {
        let egb = make_bundle(&s, name, 40, "2048");
        assert_eq!(cli(&["sign", &egb, "--key", &key]).0, EXIT_OK);
        let (code, out, err) = cli(&[
            "push",
            &egb,
            "--local",
            "--persist-to",
            &state,
            "--public-key",
            &public,
            "--wrangler",
            &w,
            "--wrangler-config",
            config,
            "--keep",
            "1",
        ]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.contains("pushed and activated"), "{out}");
        pushed.push(std::fs::read(&egb).expect("bundle"));
    }
    let second = decode(&pushed[1]).expect("decodes");
    let id = second.version_id();
    assert_eq!(kv_get(&state, ACTIVE_KEY), id.as_bytes());
    assert_eq!(
        kv_get(&state, &format!("config:version:{id}")),
        second.config.as_bytes()
    );
    let manifest: ShardManifest = serde_json::from_value(
        serde_json::from_str::<Value>(second.config).expect("json")["snapshot"].clone(),
    )
    .expect("manifest");
    let shards: Vec<Vec<u8>> = (0..manifest.shards)
        .map(|i| kv_get(&state, &manifest.shard_key(SHARD_PREFIX, i)))
        .collect();
    let joined = snapshot::join(&manifest, &shards).expect("the shards read back byte for byte");
    assert!(snapshot::decode(&joined).is_ok());
    let history: History = serde_json::from_slice(&kv_get(&state, HISTORY_KEY)).expect("history");
    assert_eq!(history.entries.len(), 1, "--keep 1");
    assert_eq!(history.entries[0].id, id);
    let signer = SigningKey::from_jwk(&std::fs::read_to_string(&key).expect("key")).expect("jwk");
    assert_eq!(
        history.entries[0].key_id.as_deref(),
        Some(signer.public.key_id.as_str())
    );
    // The first version's document went; its shards are the second's (the same generated
    // snapshot), so they stay.
    let first_id = decode(&pushed[0]).expect("decodes").version_id();
    assert_eq!(
        kv_get(&state, &format!("config:version:{first_id}")),
        b"Value not found\n"
    );
}

#[test]
fn diff_compares_a_bundles_config_with_a_config() {
    let s = Scratch::new("diff");
    let egb = make_bundle(&s, "d", 10, "4096");
    let (code, out, err) = cli(&["diff", CONFIG, &egb]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(
        out.starts_with("other: 1 added\n  + snapshot\n"),
        "only the embedded snapshot differs: {out}"
    );
    let (code, out, _) = cli(&["diff", &egb, &egb, "--exit-code"]);
    assert_eq!((code, out.as_str()), (EXIT_OK, "no differences\n"));
    let junk = s.file("junk.egb", "EGB1 not really");
    let (code, _, err) = cli(&["diff", &junk, CONFIG]);
    assert_eq!(code, EXIT_INVALID, "{err}");
}

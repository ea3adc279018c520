//! `edgegate snapshot build`: what it writes reads back through the gateway's own join and
//! decode; invalid input or command lines exit 2 and write nothing.

use edgegate_cli::{
    build_snapshot, run, BuildOptions, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, KV_LIST_FILE,
    MANIFEST_FILE,
};
use edgegate_core::snapshot::{
    decode, encode, generate, join, ShardManifest, SnapshotDoc, KV_VALUE_LIMIT, MANIFEST_KEY,
    SHARD_PREFIX,
};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A fresh, empty scratch directory for one test (removed again by [`Scratch`]'s drop).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("edgegate-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write input");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the CLI in-process; returns (exit code, stdout, stderr).
fn cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

/// The KV values an output directory holds, read back the way an uploader would: kv.json's
/// list, each file's bytes.
fn read_kv(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let list: Value =
        serde_json::from_slice(&std::fs::read(dir.join(KV_LIST_FILE)).expect("kv.json"))
            .expect("kv.json is JSON");
    list.as_array()
        .expect("kv.json is an array")
        .iter()
        .map(|e| {
            let key = e["key"].as_str().expect("key").to_string();
            let file = e["file"].as_str().expect("file");
            (
                key,
                std::fs::read(dir.join(file)).expect("listed file exists"),
            )
        })
        .collect()
}

/// Joins and decodes what the directory holds, as an isolate would from KV.
fn load(dir: &Path) -> (ShardManifest, Vec<u8>) {
    let kv = read_kv(dir);
    let (last_key, manifest_bytes) = kv.last().expect("at least the manifest");
    assert_eq!(last_key, MANIFEST_KEY, "the manifest is uploaded last");
    let manifest: ShardManifest = serde_json::from_slice(manifest_bytes).expect("manifest JSON");
    let shards: Vec<&[u8]> = (0..manifest.shards)
        .map(|i| {
            let key = manifest.shard_key(SHARD_PREFIX, i);
            let (k, v) = &kv[i as usize];
            assert_eq!(k, &key, "shard {i} in order");
            v.as_slice()
        })
        .collect();
    assert_eq!(kv.len(), manifest.shards as usize + 1, "shards + manifest");
    (
        manifest.clone(),
        join(&manifest, &shards).expect("shards join"),
    )
}

fn small_doc() -> Value {
    json!({
        "version": "2026-11-26.1",
        "consumers": [{"id": "acme", "name": "ACME", "status": "active"}],
        "applications": [{"id": "acme-web", "consumer_id": "acme", "name": "Web"}],
        "credentials": [{
            "kind": "api_key", "key": "ab".repeat(32), "consumer_id": "acme",
            "application_id": "acme-web", "status": "active", "scopes": ["orders:read"],
            "environment": "production"
        }],
        "plans": [{"id": "gold", "tier": "gold", "rate_plan": "rp-gold"}],
        "subscriptions": [{
            "id": "sub-1", "application_id": "acme-web", "api": "orders", "versions": ["v1"],
            "environment": "production", "plan_id": "gold", "status": "active",
            "scopes": ["orders:write"], "ip_allow": ["2001:db8::/32", "10.0.0.0/8"],
            "ip_deny": [], "flags": {"pii_access": true}, "metadata": {"team": "web"}
        }]
    })
}

#[test]
fn a_big_snapshot_is_sharded_and_reads_back_through_join_and_decode() {
    let s = Scratch::new("sharded");
    let doc: SnapshotDoc = generate(300, 7);
    let input = s.file("snap.json", &serde_json::to_string(&doc).expect("json"));
    let out = s.0.join("out");
    let report = build_snapshot(&BuildOptions {
        shard_bytes: 4096,
        ..BuildOptions::new(input, &out)
    })
    .expect("builds");
    let expected = encode(&doc);
    assert!(
        report.manifest.shards > 3,
        "{} shards",
        report.manifest.shards
    );
    assert_eq!(report.manifest.len, expected.len() as u64);
    assert_eq!(report.subscriptions, 300);
    assert_eq!(report.version, doc.version);
    assert_eq!(report.entries.len(), report.manifest.shards as usize + 1);

    let (manifest, joined) = load(&out);
    assert_eq!(manifest, report.manifest);
    assert_eq!(joined, expected, "the shards are the encoding, in order");
    let snap = decode(&joined).expect("decodes");
    assert_eq!(snap.version(), doc.version);
    assert_eq!(snap.len().subscriptions, 300);
    for (key, value) in read_kv(&out).iter().take(manifest.shards as usize) {
        assert!(value.len() <= 4096, "{key}: {} bytes", value.len());
        assert!(out.join(key).is_file(), "file named by its key: {key}");
    }
}

#[test]
fn the_default_is_one_kv_sized_shard_and_one_summary_line() {
    let s = Scratch::new("single");
    let input = s.file("snap.json", &small_doc().to_string());
    let out = s.0.join("nested/out");
    let (code, stdout, stderr) = cli(&[&"snapshot", &"build", &input, &"--out", &out]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert_eq!(stderr, "");
    let (manifest, joined) = load(&out);
    assert_eq!(manifest.shards, 1);
    let snap = decode(&joined).expect("decodes");
    assert_eq!(snap.version(), "2026-11-26.1");
    assert_eq!(snap.len().credentials, 1);
    let line = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for part in [
        "2026-11-26.1",
        "1 subscriptions",
        &format!("{} bytes", manifest.len),
        "1 shard,",
        &manifest.sha256,
    ] {
        assert!(line.contains(part), "summary {line:?} lacks {part:?}");
    }
    // The manifest file is exactly the KV value the gateway parses.
    let text = std::fs::read_to_string(out.join(MANIFEST_FILE)).expect("manifest");
    let parsed: ShardManifest = serde_json::from_str(&text).expect("manifest parses");
    assert_eq!(parsed, manifest);
}

#[test]
fn options_take_inline_values_and_the_file_may_come_last() {
    let s = Scratch::new("inline");
    let input = s.file("snap.json", &small_doc().to_string());
    let out = s.0.join("out");
    let mut out_arg = OsString::from("--out=");
    out_arg.push(&out);
    let (code, _, stderr) = cli(&[&"snapshot", &"build", &out_arg, &"--shard-bytes=64", &input]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let (manifest, joined) = load(&out);
    assert!(manifest.shards > 1);
    assert!(decode(&joined).is_ok());
}

#[test]
fn invalid_json_exits_2_and_writes_nothing() {
    let s = Scratch::new("badjson");
    let out = s.0.join("out");
    for (name, text) in [
        ("truncated", r#"{"version": "1", "consumers": ["#),
        ("not json", "version = 1"),
        ("trailing", r#"{"version": "1"} {}"#),
        ("unknown field", r#"{"version": "1", "extra": true}"#),
    ] {
        let input = s.file("snap.json", text);
        let (code, stdout, stderr) = cli(&[&"snapshot", &"build", &input, &"--out", &out]);
        assert_eq!(code, EXIT_INVALID, "{name}: {stderr}");
        assert_eq!(stdout, "", "{name}");
        assert!(
            stderr.starts_with('$'),
            "{name}: a JSON path first: {stderr}"
        );
        assert!(!out.exists(), "{name}: nothing written");
    }
}

#[test]
fn every_validation_problem_is_printed_with_its_path() {
    let s = Scratch::new("invalid");
    let mut doc = small_doc();
    doc["subscriptions"][0]["plan_id"] = json!("platinum");
    doc["subscriptions"][0]["versions"] = json!([]);
    doc["credentials"][0]["key"] = json!("not-a-digest");
    let input = s.file("snap.json", &doc.to_string());
    let out = s.0.join("out");
    let (code, _, stderr) = cli(&[&"snapshot", &"build", &input, &"--out", &out]);
    assert_eq!(code, EXIT_INVALID);
    let lines: Vec<&str> = stderr.lines().collect();
    for path in [
        "$.credentials[0].key: ",
        "$.subscriptions[0].plan_id: ",
        "$.subscriptions[0].versions: ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(path)),
            "no line for {path}: {stderr}"
        );
    }
    assert!(!out.exists(), "nothing written");

    let bad_cidr = small_doc().to_string().replace("10.0.0.0/8", "10.0.0.1/8");
    let input = s.file("snap.json", &bad_cidr);
    let (code, _, stderr) = cli(&[&"snapshot", &"build", &input, &"--out", &out]);
    assert_eq!(code, EXIT_INVALID);
    assert!(
        stderr.starts_with("$.subscriptions[0].ip_allow[1]: "),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn bad_command_lines_exit_2() {
    let s = Scratch::new("usage");
    let input = s.file("snap.json", &small_doc().to_string());
    let out = s.0.join("out");
    let too_big = (KV_VALUE_LIMIT + 1).to_string();
    let cases: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        vec![],
        vec![&"snapshot"],
        vec![&"snapshot", &"push"],
        vec![&"deploy"],
        vec![&"snapshot", &"build", &input],
        vec![&"snapshot", &"build", &"--out", &out],
        vec![&"snapshot", &"build", &input, &"--out"],
        vec![
            &"snapshot",
            &"build",
            &input,
            &"--out",
            &out,
            &"--shard-bytes",
            &"0",
        ],
        vec![
            &"snapshot",
            &"build",
            &input,
            &"--out",
            &out,
            &"--shard-bytes",
            &"-5",
        ],
        vec![
            &"snapshot",
            &"build",
            &input,
            &"--out",
            &out,
            &"--shard-bytes",
            &too_big,
        ],
        vec![&"snapshot", &"build", &input, &"--out", &out, &"--verbose"],
        vec![&"snapshot", &"build", &input, &input, &"--out", &out],
        vec![
            &"snapshot",
            &"build",
            &input,
            &"--out",
            &out,
            &"--out",
            &out,
        ],
    ];
    for args in cases {
        let (code, stdout, stderr) = cli(&args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert_eq!(code, EXIT_INVALID, "{shown:?}: {stderr}");
        assert_eq!(stdout, "", "{shown:?}");
        assert!(stderr.contains("edgegate --help"), "{shown:?}: {stderr}");
        assert!(!out.exists(), "{shown:?}: nothing written");
    }
    let (code, stdout, _) = cli(&[&"--help"]);
    assert_eq!(code, EXIT_OK);
    assert!(stdout.contains("snapshot build"));
}

#[test]
fn an_unreadable_input_exits_1() {
    let s = Scratch::new("missing");
    let out = s.0.join("out");
    let missing = s.0.join("nope.json");
    let (code, _, stderr) = cli(&[&"snapshot", &"build", &missing, &"--out", &out]);
    assert_eq!(code, EXIT_FAILURE);
    assert!(stderr.contains("nope.json"), "{stderr}");
    assert!(!out.exists());

    // Not UTF-8: an invalid document, not an I/O error.
    let latin1 = s.0.join("latin1.json");
    std::fs::write(&latin1, b"{\"version\": \"caf\xe9\"}").expect("write");
    let (code, _, stderr) = cli(&[&"snapshot", &"build", &latin1, &"--out", &out]);
    assert_eq!(code, EXIT_INVALID, "{stderr}");
    assert!(!out.exists());
}

#[test]
fn the_binary_runs_the_same_command() {
    let s = Scratch::new("binary");
    let input = s.file("snap.json", &small_doc().to_string());
    let out = s.0.join("out");
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["snapshot", "build"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(done.status.code(), Some(EXIT_OK), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("snapshot 2026-11-26.1: "));
    let (_, joined) = load(&out);
    assert!(decode(&joined).is_ok());

    let bad = s.file("bad.json", "{");
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(["snapshot", "build"])
        .arg(&bad)
        .arg("--out")
        .arg(s.0.join("out2"))
        .output()
        .expect("runs");
    assert_eq!(done.status.code(), Some(EXIT_INVALID));
    assert!(!s.0.join("out2").exists());
}

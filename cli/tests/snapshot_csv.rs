//! `snapshot build` from CSV: the same snapshot as the equivalent JSON document, every problem
//! at its file, line and column, and the progress path on a large input.

use edgegate_cli::snapshot_csv::{parse, CsvInput, CsvProgress};
use edgegate_cli::{build_snapshot, run_with, BuildOptions, Env, EXIT_INVALID, EXIT_OK};
use edgegate_core::snapshot::{encode, from_json, generate, SnapshotDoc};
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("edgegate-cli-csv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err, &Env::default());
    (
        code,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

const SUBS: &str = "\
subscription_id,application_id,consumer_id,consumer_name,application_name,api,versions,environment,plan_id,plan_tier,rate_plan,status,valid_from,valid_until,scopes,ip_allow,ip_deny,pii_access,priority,canary_group,metadata
sub-1,acme-web,acme,ACME,Web,orders,v1 v2,production,gold,gold,rp-gold,active,1700000000,1900000000,orders:read orders:write,10.0.0.0/8 2001:db8::/32,,true,false,,team=web; cost=1
sub-2,acme-web,acme,ACME,Web,users,*,sandbox,free,free,rp-free,suspended,,,,,192.0.2.1,,true,beta,
\"sub-3\",\"beta-app\",\"beta\",\"Beta, Inc.\",Beta app,orders,v1,production,gold,gold,rp-gold,expired,,,,,,,,,
";

const CREDS: &str = "\
kind,key,consumer_id,application_id,status,expires_at,scopes,environment
api_key,abababababababababababababababababababababababababababababababab,acme,acme-web,active,2000000000,orders:read,production
certificate,cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd,beta,,revoked,,,
";

fn expected() -> SnapshotDoc {
    from_json(
        &json!({
            "version": "2026-11-26",
            "consumers": [
                {"id": "acme", "name": "ACME", "status": "active"},
                {"id": "beta", "name": "Beta, Inc.", "status": "active"}
            ],
            "applications": [
                {"id": "acme-web", "consumer_id": "acme", "name": "Web"},
                {"id": "beta-app", "consumer_id": "beta", "name": "Beta app"}
            ],
            "credentials": [
                {"kind": "api_key", "key": "ab".repeat(32), "consumer_id": "acme",
                 "application_id": "acme-web", "status": "active", "expires_at": 2000000000i64,
                 "scopes": ["orders:read"], "environment": "production"},
                {"kind": "certificate", "key": "cd".repeat(32), "consumer_id": "beta",
                 "status": "revoked"}
            ],
            "plans": [
                {"id": "gold", "tier": "gold", "rate_plan": "rp-gold"},
                {"id": "free", "tier": "free", "rate_plan": "rp-free"}
            ],
            "subscriptions": [
                {"id": "sub-1", "application_id": "acme-web", "api": "orders",
                 "versions": ["v1", "v2"], "environment": "production", "plan_id": "gold",
                 "status": "active", "valid_from": 1700000000i64, "valid_until": 1900000000i64,
                 "scopes": ["orders:read", "orders:write"],
                 "ip_allow": ["10.0.0.0/8", "2001:db8::/32"],
                 "flags": {"pii_access": true}, "metadata": {"team": "web", "cost": "1"}},
                {"id": "sub-2", "application_id": "acme-web", "api": "users", "versions": ["*"],
                 "environment": "sandbox", "plan_id": "free", "status": "suspended",
                 "ip_deny": ["192.0.2.1"], "flags": {"priority": true, "canary_group": "beta"}},
                {"id": "sub-3", "application_id": "beta-app", "api": "orders",
                 "versions": ["v1"], "environment": "production", "plan_id": "gold",
                 "status": "expired"}
            ]
        })
        .to_string(),
    )
    .expect("the expected document is valid")
}

#[test]
fn csv_gives_the_same_snapshot_as_the_json_document() {
    let doc = parse(
        "2026-11-26",
        CsvInput {
            name: "subs.csv",
            text: SUBS,
        },
        Some(CsvInput {
            name: "creds.csv",
            text: CREDS,
        }),
        &mut |_: CsvProgress| {},
    )
    .expect("parses");
    assert_eq!(doc, expected());
    assert_eq!(encode(&doc), encode(&expected()), "byte for byte");

    let s = Scratch::new("build");
    let subs = s.file("subs.csv", SUBS);
    let creds = s.file("creds.csv", CREDS);
    let out = s.0.join("out");
    let (code, stdout, err) = cli(&[
        "snapshot",
        "build",
        &subs,
        "--credentials",
        &creds,
        "--snapshot-version",
        "2026-11-26",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(
        stdout.starts_with("snapshot 2026-11-26: 3 subscriptions"),
        "{stdout}"
    );
}

#[test]
fn every_csv_problem_is_reported_at_its_file_line_and_column() {
    let parse_err = |subs: &str, creds: Option<&str>| -> Vec<String> {
        parse(
            "v",
            CsvInput {
                name: "subs.csv",
                text: subs,
            },
            creds.map(|text| CsvInput {
                name: "creds.csv",
                text,
            }),
            &mut |_: CsvProgress| {},
        )
        .expect_err("refused")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let head = "subscription_id,application_id,consumer_id,api,versions,environment,plan_id,status";
    let cases: Vec<(String, Option<&str>, Vec<&str>)> = vec![
        (
            "subscription_id,api,colour\n".into(),
            None,
            vec![
                "subs.csv:1: unknown column `colour`",
                "subs.csv:1: missing column `application_id`",
                "subs.csv:1: missing column `status`",
            ],
        ),
        (
            format!("{head}\ns1,web,acme,orders,v1,prod,gold,paused\ns2,web,acme,orders,,prod,gold,active\n"),
            None,
            vec![
                "subs.csv:2:status: `paused`: unknown variant `paused`",
                "subs.csv:3:versions: empty",
            ],
        ),
        (
            format!("{head},consumer_name,ip_allow,valid_from,metadata\ns1,web,acme,orders,v1,prod,gold,active,ACME,10.0.0.1/8,soon,k\ns2,web,acme,orders,v1,prod,gold,active,Acme Corp,,,\n"),
            None,
            vec![
                "subs.csv:2:ip_allow: CIDR `10.0.0.1/8`",
                "subs.csv:2:valid_from: `soon`",
                "subs.csv:2:metadata: `k` is not `key=value`",
                "subs.csv:3: `acme` is described differently on line 2",
            ],
        ),
        (
            format!("{head}\ns1,web,acme,orders,v1,prod,gold,active\ns1,web,acme,users,v1,prod,gold,active\ns3,web,acme,orders,v1,prod,gold\n"),
            None,
            vec![
                "subs.csv:4: 7 fields; the header has 8",
                // The rules of the snapshot itself, at the line of the record.
            ],
        ),
        (
            format!("{head}\ns1,web,acme,orders,v1,prod,gold,active\ns1,web,acme,users,v1,prod,gold,active\n"),
            None,
            vec!["subs.csv:3:subscription_id: `s1` repeats subscriptions[0]"],
        ),
        (
            format!("{head}\ns1,web,acme,orders,v1,prod,gold,active\n"),
            Some("kind,key,consumer_id,status,application_id\napi_key,XYZ,acme,active,web\napi_key,abababababababababababababababababababababababababababababababab,ghost,active,\n"),
            vec![
                "creds.csv:2:key: not 64 lowercase hex digits",
                "creds.csv:3:consumer_id: no consumer `ghost`",
            ],
        ),
    ];
    for (subs, creds, want) in cases {
        let got = parse_err(&subs, creds);
        for w in &want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "{w:?} not in {got:#?}"
            );
        }
    }
}

#[test]
fn csv_needs_a_version_and_json_takes_no_csv_options() {
    let s = Scratch::new("usage");
    let subs = s.file("subs.csv", SUBS);
    let out = s.0.join("out");
    let out = out.to_str().expect("utf-8");
    let (code, _, err) = cli(&["snapshot", "build", &subs, "--out", out]);
    assert_eq!(code, EXIT_INVALID, "{err}");
    assert!(err.contains("--snapshot-version"), "{err}");
    let json = s.file(
        "snap.json",
        &serde_json::to_string(&expected()).expect("json"),
    );
    let (code, _, err) = cli(&[
        "snapshot",
        "build",
        &json,
        "--snapshot-version",
        "1",
        "--out",
        out,
    ]);
    assert_eq!(code, EXIT_INVALID, "{err}");
    // --format overrides the extension.
    let renamed = s.file("subs.txt", SUBS);
    let (code, _, err) = cli(&[
        "snapshot",
        "build",
        &renamed,
        "--format",
        "csv",
        "--snapshot-version",
        "1",
        "--out",
        out,
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
}

#[test]
fn a_large_input_takes_the_progress_path_and_builds_the_same_snapshot() {
    let s = Scratch::new("large");
    let doc = generate(12_000, 11);
    let text = serde_json::to_string(&doc).expect("json");
    assert!(
        text.len() as u64 >= edgegate_cli::progress::LARGE_INPUT_BYTES,
        "{} bytes",
        text.len()
    );
    let input = s.file("big.json", &text);
    let out = s.0.join("out");
    // Progress on: drawn only on a terminal (not here), the same result either way.
    let report =
        edgegate_cli::snapshot_build::build_snapshot_with(&BuildOptions::new(&input, &out), true)
            .expect("builds");
    let plain = build_snapshot(&BuildOptions::new(&input, s.0.join("out2"))).expect("builds");
    assert_eq!(report.manifest, plain.manifest);
    assert_eq!(report.subscriptions, 12_000);
}

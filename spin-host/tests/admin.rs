//! The edgegate Spin component's admin API under the host: the token (health with it, 401
//! without, 404 when no token is set), an IP block made through the API refusing the next
//! request (overrides in Spin key-value, and in Redis when it is configured, where concurrent
//! changes are serialized), and a Registry sync asked for by `POST <prefix>/sync` against the
//! mock Registry (tests/support/registry.mjs) serving a bundle the operator CLI built and
//! signed.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{args, gateway_wasm, http, http_full, Backend, HostProc, Redis};

const TOKEN: &str = "spin-admin-token-0123456789";
const ADMIN: &str = "/__edgegate/admin";

fn config(backend: SocketAddr, base_path: &str) -> String {
    format!(
        r#"{{"pools": {{"p": {{"instances": [{{"url": "http://{backend}"}}]}}}},
            "apis": [{{"name": "users", "base_path": "{base_path}",
                       "versions": [{{"name": "v2", "pool": "p"}}],
                       "routes": [{{"name": "get-user", "methods": ["GET"], "path": "/users/{{id}}"}}]}}]}}"#
    )
}

/// Starts the host on the gateway with `config(backend, "/users-api")` as active version
/// `v1`, the admin token set unless `token` is false, and `extra` flags.
fn start(name: &str, backend: &Backend, token: bool, extra: &[(&str, &str)]) -> HostProc {
    let dir = support::temp_dir(name);
    let file = dir.join("v1.json");
    std::fs::write(&file, config(backend.addr, "/users-api")).unwrap();
    let seed = format!("default:config:version:v1={}", file.display());
    let allowed = format!("http://{}", backend.addr);
    let token_var = format!("edgegate_admin_token={TOKEN}");
    let mut flags = args(&[
        ("--kv-put", "default:config:active=v1"),
        ("--kv-put-file", &seed),
        ("--allowed-outbound-hosts", &allowed),
    ]);
    if token {
        flags.extend(args(&[("--variable", &token_var)]));
    }
    flags.extend(args(extra));
    HostProc::start_component(&gateway_wasm(), &flags)
}

/// An admin call with the token; returns the status, the head and the body as JSON.
fn admin(host: &HostProc, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    let auth = format!("Bearer {TOKEN}");
    let (status, head, text) = http_full(
        host.http,
        method,
        &format!("{ADMIN}{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, head, json)
}

fn user(host: &HostProc) -> (u16, String) {
    http(host.http, "GET", "/users-api/v2/users/1", b"")
}

#[test]
fn admin_health_needs_the_token() {
    let backend = Backend::start("ok");
    let host = start("admin-health", &backend, true, &[]);

    let (status, head, body) = admin(&host, "GET", "/health", "");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["config_version"], "v1", "{body}");
    assert_eq!(body["control"]["reachable"], true, "{body}");
    assert_eq!(body["control"]["refresh_ms"], 0, "{body}");
    assert_eq!(body["registry"]["sync"], "off", "{body}");

    let (status, head, text) = http_full(host.http, "GET", &format!("{ADMIN}/health"), &[], b"");
    assert_eq!(status, 401, "{text}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(text.contains(r#""code":"admin_unauthorized""#), "{text}");

    let wrong = [("authorization", "Bearer not-the-token-at-all-0000")];
    let (status, _, text) = http_full(host.http, "GET", &format!("{ADMIN}/health"), &wrong, b"");
    assert_eq!(status, 401, "{text}");

    // One audit line per admin call (on stdout, as every log line).
    std::thread::sleep(Duration::from_millis(200));
    let audits = host
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(r#""decision":"admin""#))
        .count();
    assert_eq!(audits, 3);

    // No token variable: the admin API is off and its paths are not found.
    let off = start("admin-off", &backend, false, &[]);
    let (status, _, body) = admin(&off, "GET", "/health", "");
    assert_eq!(status, 404, "{body}");
}

/// Blocks 127.0.0.1 through the admin API, checks the next request is refused (and admin
/// calls are not), unblocks it again. Returns the host's KV value of the overrides (404 or
/// 200) for the caller to check where they were stored.
fn block_then_unblock(host: &HostProc, backend: &Backend) -> u16 {
    use std::sync::atomic::Ordering;
    assert_eq!(user(host).0, 200);

    let (status, _, body) = admin(
        host,
        "POST",
        "/ip-blocks",
        r#"{"cidr": "127.0.0.1", "reason": "spin test"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "changed", "{body}");
    assert_eq!(body["revision"], 1, "{body}");

    let hits = backend.hits.load(Ordering::SeqCst);
    let (status, text) = user(host);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(r#""code":"ip_blocked""#), "{text}");
    assert_eq!(
        backend.hits.load(Ordering::SeqCst),
        hits,
        "a blocked call reached the backend"
    );

    // The admin API is not subject to blocks (an operator cannot lock themselves out).
    let (status, _, body) = admin(host, "GET", "/ip-blocks", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["blocks"][0]["cidr"], "127.0.0.1/32", "{body}");
    assert_eq!(body["blocks"][0]["reason"], "spin test", "{body}");

    let stored = http(
        host.admin,
        "GET",
        "/kv/default/edgegate-control%3Aglobal",
        b"",
    )
    .0;

    let (status, _, body) = admin(host, "DELETE", "/ip-blocks?cidr=127.0.0.1", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revision"], 2, "{body}");
    assert_eq!(user(host).0, 200);
    stored
}

#[test]
fn an_ip_block_made_through_the_admin_api_refuses_the_next_request() {
    let backend = Backend::start("ok");
    let host = start("admin-block-kv", &backend, true, &[]);
    // No Redis: the overrides live in Spin key-value.
    assert_eq!(block_then_unblock(&host, &backend), 200);
}

#[test]
fn with_redis_ip_blocks_live_in_redis_and_concurrent_changes_all_land() {
    let Some(redis) = Redis::start() else {
        support::skip(
            "with_redis_ip_blocks_live_in_redis_and_concurrent_changes_all_land",
            "no redis-server on PATH and no EDGEGATE_TEST_REDIS \
             (install it: apt-get install -y redis-server)",
        );
        return;
    };
    let backend = Backend::start("ok");
    let redis_var = format!("redis_address={}", redis.url);
    let host = start(
        "admin-block-redis",
        &backend,
        true,
        &[
            ("--variable", &redis_var),
            ("--redis", &redis.url),
            ("--variable", "edgegate_admin_rate_limit=1000"),
        ],
    );
    // With Redis the overrides are not in key-value.
    assert_eq!(block_then_unblock(&host, &backend), 404);

    // Concurrent admin changes: each is an optimistic transaction on the one state, so none
    // is lost (in key-value, without compare-and-set, some would be).
    let n = 24;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let addr = host.http;
            std::thread::spawn(move || {
                let auth = format!("Bearer {TOKEN}");
                let body = format!(r#"{{"cidr": "10.0.0.{i}", "reason": "r{i}"}}"#);
                http_full(
                    addr,
                    "POST",
                    &format!("{ADMIN}/ip-blocks"),
                    &[("authorization", &auth)],
                    body.as_bytes(),
                )
                .0
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (status, _, body) = admin(&host, "GET", "/ip-blocks", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["blocks"].as_array().map(Vec::len), Some(n), "{body}");
    // Two changes before (block, unblock) and one per concurrent call.
    assert_eq!(body["revision"], 2 + n as u64, "{body}");
}

/// The operator CLI (`edgegate`): `EDGEGATE_CLI`, or the root workspace's debug build.
fn cli() -> Option<PathBuf> {
    let path = std::env::var_os("EDGEGATE_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/edgegate"));
    path.is_file().then_some(path)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The mock Registry (`node tests/support/registry.mjs`) on a free port, killed on drop.
struct MockRegistry {
    child: Child,
    url: String,
}

impl MockRegistry {
    fn start(bundle: &Path, token: &str) -> Option<Self> {
        // Canonical: the script serves only when it is node's main module (argv[1]).
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/support/registry.mjs")
            .canonicalize()
            .ok()?;
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", "0", "--token", token, "--bundle"])
            .arg(bundle)
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        // "mock Registry serving FILE at http://127.0.0.1:PORT/bundle" once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let url = line.trim().rsplit(" at ").next()?.to_string();
        url.starts_with("http://127.0.0.1:")
            .then_some(Self { child, url })
    }
}

impl Drop for MockRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_admin_api_sync_activates_a_signed_bundle_from_the_registry() {
    let name = "the_admin_api_sync_activates_a_signed_bundle_from_the_registry";
    let Some(cli) = cli() else {
        support::skip(
            name,
            "no operator CLI: build it (cargo build -p edgegate-cli) or set EDGEGATE_CLI",
        );
        return;
    };
    let backend = Backend::start("ok");
    let dir = support::temp_dir("admin-sync");
    let cfg = dir.join("people.json");
    std::fs::write(&cfg, config(backend.addr, "/people")).unwrap();
    let bundle = dir.join("people.egb");
    run(Command::new(&cli)
        .arg("keygen")
        .arg("--out")
        .arg(dir.join("registry")));
    run(Command::new(&cli)
        .args([
            "bundle",
            "--platform",
            "spin",
            "--label",
            "spin-r1",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&bundle));
    run(Command::new(&cli)
        .arg("sign")
        .arg(&bundle)
        .arg("--key")
        .arg(dir.join("registry.key")));
    let public = std::fs::read_to_string(dir.join("registry.pub")).unwrap();

    let registry_token = "registry-token-for-spin";
    let Some(registry) = MockRegistry::start(&bundle, registry_token) else {
        support::skip(name, "node could not run tests/support/registry.mjs");
        return;
    };
    let origin = registry.url.trim_end_matches("/bundle").to_string();
    let vars = [
        format!("edgegate_registry_url={}", registry.url),
        format!("edgegate_registry_token={registry_token}"),
        format!("edgegate_registry_keys={}", public.trim()),
    ];
    let host = start(
        "admin-sync-host",
        &backend,
        true,
        &[
            ("--variable", &vars[0]),
            ("--variable", &vars[1]),
            ("--variable", &vars[2]),
            ("--allowed-outbound-hosts", &origin),
            // No lazy tick: this test syncs only through the admin API (tests/tick.rs covers
            // the tick).
            ("--variable", "edgegate_sync_interval_s=0"),
        ],
    );
    assert_eq!(user(&host).0, 200);
    assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 404);
    let (_, _, health) = admin(&host, "GET", "/health", "");
    assert_eq!(health["registry"]["sync"], "on", "{health}");

    let (status, _, body) = admin(&host, "POST", "/sync", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "activated", "{body}");
    assert_eq!(body["label"], "spin-r1", "{body}");
    assert_eq!(body["previous"], "v1", "{body}");
    assert!(body["key_id"].is_string(), "accepted unsigned? {body}");
    let version = body["version"].as_str().unwrap().to_string();

    // The next request (a fresh instance) serves the new version.
    assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 200);
    assert_eq!(user(&host).0, 404);
    let (status, pointer) = http(host.admin, "GET", "/kv/default/config%3Aactive", b"");
    assert_eq!((status, pointer.as_str()), (200, version.as_str()));

    // The same bundle again: 304 from the Registry (the ETag was stored), nothing changes.
    let (status, _, body) = admin(&host, "POST", "/sync", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"] == "not_modified" || body["result"] == "unchanged",
        "{body}"
    );
    let (_, _, versions) = admin(&host, "GET", "/config/versions", "");
    assert!(versions.to_string().contains(&version), "{versions}");
}

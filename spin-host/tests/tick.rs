//! The edgegate Spin component's lazy tick under the host: Spin's HTTP trigger has no cron,
//! so after a response is sent the instance runs the core's scheduled work (Registry sync,
//! JWKS prefetch) when it is due. Against a mock Registry (in this file) that answers only
//! after a delay and counts its calls: the first request is served by the seeded config
//! without waiting for the Registry, the sync runs behind it, a later request sees the new
//! version, and requests within the interval do not call the Registry again.
//!
//! The same component also exports the spin-trigger-cron plugin's `handle-cron-event`; the
//! host's admin `POST /cron` calls it as the plugin does on each tick (last test).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{args, gateway_wasm, http, Backend, HostProc};

/// How long the mock Registry waits before it answers.
const REGISTRY_DELAY: Duration = Duration::from_secs(2);
const ETAG: &str = "\"tick-bundle-1\"";

fn config(backend: SocketAddr, base_path: &str) -> String {
    format!(
        r#"{{"pools": {{"p": {{"instances": [{{"url": "http://{backend}"}}]}}}},
            "apis": [{{"name": "users", "base_path": "{base_path}",
                       "versions": [{{"name": "v2", "pool": "p"}}],
                       "routes": [{{"name": "get-user", "methods": ["GET"], "path": "/users/{{id}}"}}]}}]}}"#
    )
}

/// A Registry on 127.0.0.1 serving one bundle with a fixed ETag (304 when the request
/// carries it), each answer after `delay`; counts the requests.
struct MockRegistry {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl MockRegistry {
    fn start(bundle: Vec<u8>, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let bundle = Arc::new(bundle);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().map_while(Result::ok) {
                counter.fetch_add(1, Ordering::SeqCst);
                let bundle = bundle.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    std::thread::sleep(delay);
                    let not_modified = head
                        .lines()
                        .any(|l| l.starts_with("if-none-match:") && l.contains(ETAG));
                    let (status, body): (&str, &[u8]) = if not_modified {
                        ("304 Not Modified", b"")
                    } else {
                        ("200 OK", &bundle)
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nETag: {ETAG}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                    let _ = conn.write_all(body);
                });
            }
        });
        Self {
            url: format!("http://{addr}/bundle"),
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
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

/// A bundle of `config(backend, "/people")` built and signed by the CLI; returns its bytes
/// and the public key text.
fn signed_bundle(cli: &Path, dir: &Path, backend: &Backend) -> (Vec<u8>, String) {
    let cfg = dir.join("people.json");
    std::fs::write(&cfg, config(backend.addr, "/people")).unwrap();
    let bundle = dir.join("people.egb");
    run(Command::new(cli)
        .arg("keygen")
        .arg("--out")
        .arg(dir.join("registry")));
    run(Command::new(cli)
        .args([
            "bundle",
            "--platform",
            "spin",
            "--label",
            "tick-r1",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&bundle));
    run(Command::new(cli)
        .arg("sign")
        .arg(&bundle)
        .arg("--key")
        .arg(dir.join("registry.key")));
    let public = std::fs::read_to_string(dir.join("registry.pub")).unwrap();
    (std::fs::read(&bundle).unwrap(), public.trim().to_string())
}

/// Starts the host on the gateway with `config(backend, "/users-api")` as active version
/// `v1`, syncing from `registry` (signed with `public`), and `extra` flags.
fn start(
    name: &str,
    backend: &Backend,
    registry: &MockRegistry,
    public: &str,
    extra: &[(&str, &str)],
) -> HostProc {
    let dir = support::temp_dir(name);
    let file = dir.join("v1.json");
    std::fs::write(&file, config(backend.addr, "/users-api")).unwrap();
    let seed = format!("default:config:version:v1={}", file.display());
    let origin = registry.url.trim_end_matches("/bundle").to_string();
    let vars = [
        format!("edgegate_registry_url={}", registry.url),
        format!("edgegate_registry_keys={public}"),
    ];
    let mut flags = args(&[
        ("--kv-put", "default:config:active=v1"),
        ("--kv-put-file", &seed),
        (
            "--allowed-outbound-hosts",
            &format!("http://{}", backend.addr),
        ),
        ("--allowed-outbound-hosts", &origin),
        ("--variable", &vars[0]),
        ("--variable", &vars[1]),
    ]);
    flags.extend(args(extra));
    HostProc::start_component(&gateway_wasm(), &flags)
}

/// A request and how long the client waited for the whole response.
fn timed(host: &HostProc, path: &str) -> (u16, Duration) {
    let t = Instant::now();
    let (status, _) = http(host.http, "GET", path, b"");
    (status, t.elapsed())
}

/// Polls `f` every 100 ms for up to `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn the_sync_runs_after_the_response_and_a_later_request_sees_the_new_version() {
    let name = "the_sync_runs_after_the_response_and_a_later_request_sees_the_new_version";
    let Some(cli) = cli() else {
        support::skip(
            name,
            "no operator CLI: build it (cargo build -p edgegate-cli) or set EDGEGATE_CLI",
        );
        return;
    };
    let backend = Backend::start("ok");
    let dir = support::temp_dir("tick-sync");
    let (bundle, public) = signed_bundle(&cli, &dir, &backend);
    let registry = MockRegistry::start(bundle, REGISTRY_DELAY);
    let host = start("tick-sync-host", &backend, &registry, &public, &[]);

    // The first request: served by the seeded v1, in full, while the Registry still waits.
    let (status, waited) = timed(&host, "/users-api/v2/users/1");
    assert_eq!(status, 200);
    assert!(
        waited < REGISTRY_DELAY / 2,
        "the client waited {waited:?}: the tick delayed the response"
    );
    // The tick behind it asked the Registry (once).
    assert!(
        eventually(Duration::from_secs(5), || registry.hits() >= 1),
        "no Registry call after the first request"
    );
    // Until the Registry answers, requests are served by v1 (and start no second sync: the
    // lease is held).
    let (status, waited) = timed(&host, "/people/v2/users/1");
    assert_eq!(status, 404, "the new version is not active yet");
    assert!(waited < REGISTRY_DELAY / 2, "waited {waited:?}");

    // Once the sync has activated the bundle, the next request (a fresh instance) serves it.
    assert!(
        eventually(Duration::from_secs(15), || http(
            host.http,
            "GET",
            "/people/v2/users/1",
            b""
        )
        .0 == 200),
        "the synced version never served"
    );
    assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 404);
    let (status, pointer) = http(host.admin, "GET", "/kv/default/config%3Aactive", b"");
    assert_eq!(status, 200);
    assert_ne!(pointer, "v1");
    let (status, lease) = http(host.admin, "GET", "/kv/default/registry%3Atick-lease", b"");
    assert_eq!(status, 200, "no lease in key-value");
    assert!(lease.contains("\"finished_ms\":"), "{lease}");

    // More requests within the interval (60 s): no further Registry call.
    for _ in 0..5 {
        assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        registry.hits(),
        1,
        "the Registry was called again within the interval"
    );
    let ticks = host
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(r#""event":"config_check""#))
        .count();
    assert_eq!(ticks, 1, "one registry_tick line");
}

#[test]
fn with_the_interval_at_zero_requests_never_call_the_registry() {
    let name = "with_the_interval_at_zero_requests_never_call_the_registry";
    let Some(cli) = cli() else {
        support::skip(
            name,
            "no operator CLI: build it (cargo build -p edgegate-cli) or set EDGEGATE_CLI",
        );
        return;
    };
    let backend = Backend::start("ok");
    let dir = support::temp_dir("tick-off");
    let (bundle, public) = signed_bundle(&cli, &dir, &backend);
    let registry = MockRegistry::start(bundle, Duration::ZERO);
    let host = start(
        "tick-off-host",
        &backend,
        &registry,
        &public,
        &[("--variable", "edgegate_sync_interval_s=0")],
    );
    for _ in 0..3 {
        assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(registry.hits(), 0);
    let (status, _) = http(host.admin, "GET", "/kv/default/registry%3Atick-lease", b"");
    assert_eq!(status, 404, "no lease without a tick");
}

#[test]
fn a_cron_tick_through_the_plugins_export_syncs_and_logs_config_check() {
    let name = "a_cron_tick_through_the_plugins_export_syncs_and_logs_config_check";
    let Some(cli) = cli() else {
        support::skip(
            name,
            "no operator CLI: build it (cargo build -p edgegate-cli) or set EDGEGATE_CLI",
        );
        return;
    };
    let backend = Backend::start("ok");
    let dir = support::temp_dir("tick-cron");
    let (bundle, public) = signed_bundle(&cli, &dir, &backend);
    let registry = MockRegistry::start(bundle, Duration::ZERO);
    // The lazy tick off: only the cron export syncs.
    let host = start(
        "tick-cron-host",
        &backend,
        &registry,
        &public,
        &[("--variable", "edgegate_sync_interval_s=0")],
    );
    assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 200);
    assert_eq!(registry.hits(), 0);

    let (status, body) = http(host.admin, "POST", "/cron", b"");
    assert_eq!(status, 204, "{body}");
    assert_eq!(registry.hits(), 1, "the cron tick asked the Registry once");
    assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 200);
    assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 404);
    assert!(
        eventually(Duration::from_secs(5), || host
            .output
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(r#""event":"config_check""#)
                && l.contains(r#""trigger":"cron""#)
                && l.contains(r#""result":"activated""#))),
        "no config_check line of the cron tick"
    );

    // A second tick: the Registry answers 304, nothing changes.
    let (status, body) = http(host.admin, "POST", "/cron", b"");
    assert_eq!(status, 204, "{body}");
    assert_eq!(registry.hits(), 2);
    assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 200);
}

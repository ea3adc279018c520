//! The edgegate Spin component (../spin) under the host: a first smoke test of the adapter —
//! config from Spin key-value, routing and proxying to a backend on 127.0.0.1, problem+json,
//! `allowed_outbound_hosts`, config switching through the store, and exact rate limits on
//! Redis. The full scenario suite (issue 7, point 5) will run the same scenarios on both
//! platforms; this only proves the adapter and the host fit together.

mod support;

use support::{args, gateway_wasm, http, http_full, Backend, HostProc, Redis};

fn config(backend: std::net::SocketAddr, extra_route_policy: &str) -> String {
    format!(
        r#"{{"pools": {{"p": {{"instances": [{{"url": "http://{backend}"}}]}},
                      "denied": {{"instances": [{{"url": "http://127.0.0.1:9"}}]}}}},
            "apis": [{{"name": "users", "base_path": "/users-api",
                       "versions": [{{"name": "v2", "pool": "p"}}],
                       "routes": [{{"name": "get-user", "methods": ["GET"], "path": "/users/{{id}}"{extra_route_policy}}},
                                  {{"name": "denied", "methods": ["GET"], "path": "/denied", "pool": "denied"}}]}}]}}"#
    )
}

/// Starts the host on the gateway with `cfg` as the active version `v1`; `name` keeps each
/// test's files apart (tests run in parallel).
fn start(name: &str, backend: &Backend, cfg: &str, extra: &[(&str, &str)]) -> HostProc {
    let dir = support::temp_dir(name);
    let file = dir.join("v1.json");
    std::fs::write(&file, cfg).unwrap();
    let seed = format!("default:config:version:v1={}", file.display());
    let allowed = format!("http://{}", backend.addr);
    let mut flags = args(&[
        ("--kv-put", "default:config:active=v1"),
        ("--kv-put-file", &seed),
        ("--allowed-outbound-hosts", &allowed),
    ]);
    flags.extend(args(extra));
    HostProc::start_component(&gateway_wasm(), &flags)
}

#[test]
fn routes_proxies_and_answers_problems_from_a_kv_config() {
    let backend = Backend::start("user 42");
    let host = start("routes", &backend, &config(backend.addr, ""), &[]);

    let (status, head, body) = http_full(host.http, "GET", "/users-api/v2/users/42?x=1", &[], b"");
    assert_eq!((status, body.as_str()), (200, "user 42"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    let seen = backend.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(seen.starts_with("get /users/42?x=1 http/1.1"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(
        seen.contains(&format!("x-forwarded-host: {}", host.http)),
        "{seen}"
    );
    assert!(
        !seen.contains("spin-"),
        "Spin's trigger headers leaked: {seen}"
    );

    let (status, head, body) = http_full(host.http, "GET", "/nope", &[], b"");
    assert_eq!(status, 404);
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(body.contains(r#""code":"route_not_found""#), "{body}");

    // A backend outside allowed_outbound_hosts is refused by the platform: 502, never sent.
    let (status, _, body) = http_full(host.http, "GET", "/users-api/v2/denied", &[], b"");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_unreachable"), "{body}");

    // One access line per request on stdout (the component's println!).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let access = host
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(r#""kind":"access""#))
        .count();
    assert_eq!(access, 3);
}

#[test]
fn a_new_config_version_in_the_store_is_served_at_once() {
    let backend = Backend::start("ok");
    let host = start("switch", &backend, &config(backend.addr, ""), &[]);
    assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 200);
    let v2 = config(backend.addr, "").replace("/users-api", "/people");
    assert_eq!(
        http(
            host.admin,
            "PUT",
            "/kv/default/config%3Aversion%3Av2",
            v2.as_bytes()
        )
        .0,
        204
    );
    assert_eq!(
        http(host.admin, "PUT", "/kv/default/config%3Aactive", b"v2").0,
        204
    );
    // Spin runs a fresh instance per request: the next request reads the new pointer.
    assert_eq!(http(host.http, "GET", "/people/v2/users/1", b"").0, 200);
    assert_eq!(http(host.http, "GET", "/users-api/v2/users/1", b"").0, 404);
}

#[test]
fn exact_rate_limits_on_redis_admit_exactly_the_limit() {
    let Some(redis) = Redis::start() else {
        support::skip(
            "exact_rate_limits_on_redis_admit_exactly_the_limit",
            "no redis-server on PATH and no EDGEGATE_TEST_REDIS \
             (install it: apt-get install -y redis-server)",
        );
        return;
    };
    let backend = Backend::start("ok");
    let limit = r#", "policies": {"rate_limits": [{"name": "per-api", "key": "api",
        "algorithm": "sliding_window", "limit": 20, "window_s": 600, "on_error": "closed"}]}"#;
    let redis_var = format!("redis_address={}", redis.url);
    let host = start(
        "ratelimit",
        &backend,
        &config(backend.addr, limit),
        &[("--variable", &redis_var), ("--redis", &redis.url)],
    );
    let n = 60;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let addr = host.http;
            std::thread::spawn(move || http(addr, "GET", "/users-api/v2/users/1", b"").0)
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let errors: Vec<String> = host
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("rate_limit_unavailable"))
        .take(3)
        .cloned()
        .collect();
    assert_eq!(
        (ok, limited),
        (20, n - 20),
        "statuses: {statuses:?}\nerrors: {errors:#?}"
    );
}

#[test]
fn a_config_asking_for_client_certificates_is_refused_on_spin() {
    let backend = Backend::start("ok");
    let mtls = format!(
        r#", "policies": {{"auth": {{"accept": ["mtls"], "mtls": {{"certificates":
        [{{"fingerprint_sha256": "{}", "consumer": "billing"}}]}}}}}}"#,
        "ab".repeat(32)
    );
    let host = start("mtls", &backend, &config(backend.addr, &mtls), &[]);
    let (status, _, body) = http_full(host.http, "GET", "/users-api/v2/users/1", &[], b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_config"), "{body}");
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let output = host.output.lock().unwrap().join("\n");
    assert!(
        output.contains("config_rejected") && output.contains("`mtls` is not available"),
        "{output}"
    );
}

//! The edgegate Spin component under the host, where every request runs in a fresh
//! instance: round robin rotates through the shared cache (key-value), an approximate rate
//! limit without Redis admits exactly its limit for sequential requests (key-value counters),
//! and with Redis an approximate limit leases no blocks that would die with the instance.

mod support;

use std::sync::atomic::Ordering;
use support::{args, gateway_wasm, http, Backend, HostProc, Redis};

/// One API `/api` on pool `p` of `backends` (equal weights, round robin), its route `/r`
/// with these `rate_limits` (JSON).
fn config(backends: &[&Backend], rate_limits: &str) -> String {
    let instances: Vec<String> = backends
        .iter()
        .map(|b| format!(r#"{{"url": "http://{}"}}"#, b.addr))
        .collect();
    format!(
        r#"{{"pools": {{"p": {{"instances": [{}], "balance": "round_robin"}}}},
            "apis": [{{"name": "a", "base_path": "/api", "pool": "p",
                       "routes": [{{"name": "r", "methods": ["GET"], "path": "/r",
                                    "policies": {{"rate_limits": {rate_limits}}}}}]}}]}}"#,
        instances.join(", ")
    )
}

/// Starts the host on the gateway with `cfg` active as `v1`, every backend allowed;
/// `name` keeps each test's files apart.
fn start(name: &str, backends: &[&Backend], cfg: &str, extra: &[(&str, &str)]) -> HostProc {
    let dir = support::temp_dir(&format!("instances-{name}"));
    let file = dir.join("v1.json");
    std::fs::write(&file, cfg).unwrap();
    let seed = format!("default:config:version:v1={}", file.display());
    let mut flags = args(&[
        ("--kv-put", "default:config:active=v1"),
        ("--kv-put-file", &seed),
    ]);
    for b in backends {
        flags.extend(args(&[(
            "--allowed-outbound-hosts",
            &format!("http://{}", b.addr),
        )]));
    }
    flags.extend(args(extra));
    HostProc::start_component(&gateway_wasm(), &flags)
}

/// An approximate sliding-window limit on the API key.
fn approximate(limit: u64, lease: u64) -> String {
    format!(
        r#"[{{"name": "cap", "key": "api", "algorithm": "sliding_window", "limit": {limit},
             "window_s": 600, "mode": "approximate", "lease": {lease}, "on_error": "closed"}}]"#
    )
}

/// `n` sequential requests to `/api/r`: their statuses.
fn sequential(host: &HostProc, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| http(host.http, "GET", "/api/r", b"").0)
        .collect()
}

/// The host's stdout lines that mention `what` (the first few), for failure messages.
fn lines_with(host: &HostProc, what: &str) -> Vec<String> {
    host.output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(what))
        .take(3)
        .cloned()
        .collect()
}

#[test]
fn round_robin_alternates_between_two_backends() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let host = start("rr", &[&a, &b], &config(&[&a, &b], "[]"), &[]);
    let mut order = String::new();
    for _ in 0..6 {
        let (status, body) = http(host.http, "GET", "/api/r", b"");
        assert_eq!(status, 200, "{body}");
        order.push_str(&body);
    }
    assert_eq!(order, "ababab");
    assert_eq!(
        (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst)),
        (3, 3)
    );
    assert!(
        lines_with(&host, "balancer_state_unavailable").is_empty(),
        "{:?}",
        lines_with(&host, "balancer_state_unavailable")
    );
    // The position is in the shared cache (key-value), under the pool's name.
    let keys = http(host.admin, "GET", "/kv/default", b"").1;
    assert!(keys.contains(r#""edgegate-cache:edgegate:rr:p""#), "{keys}");
}

#[test]
fn an_approximate_limit_without_redis_admits_exactly_the_limit_then_429() {
    let backend = Backend::start("ok");
    let host = start(
        "approx-kv",
        &[&backend],
        &config(&[&backend], &approximate(10, 5)),
        &[],
    );
    let statuses = sequential(&host, 14);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        ok,
        10,
        "statuses: {statuses:?}\nerrors: {:#?}",
        lines_with(&host, "rate_limit_unavailable")
    );
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(backend.hits.load(Ordering::SeqCst), 10);
    let keys = http(host.admin, "GET", "/kv/default", b"").1;
    assert!(
        keys.contains(r#""edgegate-counter:rl|route:a/r|cap|api|a""#),
        "{keys}"
    );
}

#[test]
fn an_approximate_limit_on_redis_with_lease_10_admits_exactly_20_of_20() {
    let Some(redis) = Redis::start() else {
        support::skip(
            "an_approximate_limit_on_redis_with_lease_10_admits_exactly_20_of_20",
            "no redis-server on PATH and no EDGEGATE_TEST_REDIS \
             (install it: apt-get install -y redis-server)",
        );
        return;
    };
    let backend = Backend::start("ok");
    let redis_var = format!("redis_address={}", redis.url);
    let host = start(
        "approx-redis",
        &[&backend],
        &config(&[&backend], &approximate(20, 10)),
        &[("--variable", &redis_var), ("--redis", &redis.url)],
    );
    let statuses = sequential(&host, 25);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        ok,
        20,
        "statuses: {statuses:?}\nerrors: {:#?}",
        lines_with(&host, "rate_limit_unavailable")
    );
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // The counter key expires when its state is empty again: within two 600 s windows.
    let ttl = redis_pttl(&redis.url, "edgegate:counter:rl|route:a/r|cap|api|a");
    assert!((1..=1_200_000).contains(&ttl), "PTTL {ttl}");
}

/// Redis `PTTL key` over a plain connection (-2: no key, -1: no expiry).
fn redis_pttl(url: &str, key: &str) -> i64 {
    use std::io::{BufRead, BufReader, Write};
    let addr = url.trim_start_matches("redis://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let cmd = format!("*2\r\n$4\r\nPTTL\r\n${}\r\n{key}\r\n", key.len());
    conn.write_all(cmd.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PTTL answered {line:?}"))
}

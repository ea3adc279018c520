//! The host end to end: the unmodified spin-sdk 5.2.0 probe component (tests/fixtures/probe)
//! served over real HTTP by the `edgegate-spin-host` binary.

mod support;

use support::{args, http, Backend, HostProc, Redis};

#[test]
fn key_value_is_shared_across_requests_and_survives_a_restart() {
    let dir = support::temp_dir("kv-restart");
    let dir_s = dir.to_str().unwrap();
    let flags = args(&[("--kv-store", "default,config"), ("--kv-dir", dir_s)]);
    {
        let host = HostProc::start(&flags);
        for want in 1..=3 {
            let (status, body) = host.call("POST", "/kv/count?store=default&key=n", b"");
            assert_eq!((status, body), (200, want.to_string()));
        }
        // Named stores are separate.
        assert_eq!(
            host.call("POST", "/kv/count?store=config&key=n", b""),
            (200, "1".into())
        );
        let (status, _) = host.call("PUT", "/kv?store=config&key=blob", &[0, 1, 2, 255]);
        assert_eq!(status, 200);
    }
    let host = HostProc::start(&flags);
    assert_eq!(
        host.call("POST", "/kv/count?store=default&key=n", b""),
        (200, "4".into())
    );
    assert_eq!(
        host.call("POST", "/kv/count?store=config&key=n", b""),
        (200, "2".into())
    );
    // Binary values round-trip through the file (read back through the admin endpoint).
    let (status, _) = http(host.admin, "GET", "/kv/config/blob", b"");
    assert_eq!(status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn key_value_without_a_dir_starts_empty_and_refuses_unlisted_stores() {
    let flags = args(&[("--kv-put", "default:greeting=hello")]);
    let host = HostProc::start(&flags);
    assert_eq!(
        host.call("GET", "/kv?store=default&key=greeting", b""),
        (200, "hello".into())
    );
    assert_eq!(
        host.call("GET", "/kv?store=default&key=missing", b""),
        (404, "absent".into())
    );
    let (status, body) = host.call("GET", "/kv?store=secret&key=x", b"");
    assert_eq!(status, 500);
    assert!(body.contains("AccessDenied"), "{body}");
    drop(host);
    let host = HostProc::start(&[]);
    assert_eq!(
        host.call("GET", "/kv?store=default&key=greeting", b"").0,
        404,
        "an in-memory store must not outlive its host"
    );
}

#[test]
fn the_admin_endpoint_seeds_and_reads_stores() {
    let host = HostProc::start(&args(&[("--kv-store", "config")]));
    assert_eq!(http(host.admin, "GET", "/health", b""), (200, "ok".into()));
    assert_eq!(
        http(host.admin, "PUT", "/kv/config/config%3Aactive", b"v7").0,
        204
    );
    assert_eq!(
        host.call("GET", "/kv?store=config&key=config:active", b""),
        (200, "v7".into())
    );
    host.call("PUT", "/kv?store=config&key=written", b"by the component");
    assert_eq!(
        http(host.admin, "GET", "/kv/config/written", b""),
        (200, "by the component".into())
    );
    assert_eq!(
        http(host.admin, "GET", "/kv/config", b""),
        (200, r#"["config:active","written"]"#.into())
    );
    assert_eq!(http(host.admin, "DELETE", "/kv/config/written", b"").0, 204);
    assert_eq!(http(host.admin, "GET", "/kv/config/written", b"").0, 404);
    assert_eq!(http(host.admin, "GET", "/kv/other/x", b"").0, 404);
}

#[test]
fn variables_answer_values_undefined_and_invalid_names() {
    let host = HostProc::start(&args(&[
        ("--variable", "signing_key=s3cret=="),
        ("--variable", "other=1"),
    ]));
    assert_eq!(
        host.call("GET", "/var?name=signing_key", b""),
        (200, "s3cret==".into())
    );
    let (status, body) = host.call("GET", "/var?name=missing", b"");
    assert_eq!(status, 500);
    assert!(body.contains("Undefined"), "{body}");
    let (status, body) = host.call("GET", "/var?name=Bad-Name", b"");
    assert_eq!(status, 500);
    assert!(body.contains("InvalidName"), "{body}");
}

#[test]
fn outbound_http_reaches_allowed_hosts_only() {
    let allowed = Backend::start("allowed backend");
    let other = Backend::start("must not be reached");
    let host = HostProc::start(&args(&[(
        "--allowed-outbound-hosts",
        &format!("http://{}", allowed.addr),
    )]));
    assert_eq!(
        host.call("GET", &format!("/fetch?url=http://{}/x", allowed.addr), b""),
        (200, "200 allowed backend".into())
    );
    for url in [
        format!("http://{}/x", other.addr),
        format!("http://localhost:{}/x", allowed.addr.port()),
        format!("https://{}/x", allowed.addr),
        "http://example.com/".to_string(),
    ] {
        let (status, body) = host.call("GET", &format!("/fetch?url={url}"), b"");
        assert_eq!(status, 500, "{url}: {body}");
        assert!(body.contains("HttpRequestDenied"), "{url}: {body}");
    }
    assert_eq!(other.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(allowed.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn spin_request_headers_are_set() {
    let host = HostProc::start(&[]);
    let (status, body) = host.call("GET", "/headers?a=1", b"");
    assert_eq!(status, 200);
    assert!(body.contains("spin-client-addr: 127.0.0.1:"), "{body}");
    assert!(
        body.contains(&format!("spin-full-url: http://{}/headers?a=1", host.http)),
        "{body}"
    );
    assert!(body.contains("spin-path-info: /headers"), "{body}");
}

#[test]
fn a_trapping_request_gets_500_and_the_host_keeps_serving() {
    let host = HostProc::start_quiet(&[]);
    let (status, body) = host.call("GET", "/panic", b"");
    assert_eq!(status, 500);
    assert!(body.contains("component failed"), "{body}");
    assert_eq!(host.call("GET", "/kv?store=default&key=x", b"").0, 404);
}

fn redis_or_skip(test: &str) -> Option<Redis> {
    let r = Redis::start();
    if r.is_none() {
        support::skip(
            test,
            "no redis-server on PATH and no EDGEGATE_TEST_REDIS \
             (install it: apt-get install -y redis-server)",
        );
    }
    r
}

#[test]
fn redis_incr_is_exact_under_concurrency() {
    let Some(redis) = redis_or_skip("redis_incr_is_exact_under_concurrency") else {
        return;
    };
    let host = HostProc::start(&args(&[("--redis", &redis.url)]));
    let n = 64;
    let path = format!("/redis/incr?addr={}&key=hits", redis.url);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (addr, path) = (host.http, path.clone());
            std::thread::spawn(move || http(addr, "POST", &path, b""))
        })
        .collect();
    let mut seen: Vec<i64> = handles
        .into_iter()
        .map(|h| {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{body}");
            body.parse().unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (1..=n).collect::<Vec<_>>(),
        "every increment exactly once"
    );
    let get = format!("/redis/get?addr={}&key=hits", redis.url);
    assert_eq!(host.call("GET", &get, b""), (200, n.to_string()));
}

#[test]
fn redis_execute_sets_an_expiry_and_addresses_are_checked() {
    let Some(redis) = redis_or_skip("redis_execute_sets_an_expiry_and_addresses_are_checked")
    else {
        return;
    };
    let host = HostProc::start(&args(&[("--redis", &redis.url)]));
    let (status, body) = host.call(
        "POST",
        &format!("/redis/incr-expire?addr={}&key=win&ttl=30", redis.url),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let (value, ttl) = body.split_once(' ').unwrap();
    assert_eq!(value, "1");
    let ttl: i64 = ttl.parse().unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");

    // An address not in allowed_outbound_hosts is refused before any connection.
    let (status, body) = host.call("POST", "/redis/incr?addr=redis://127.0.0.2:1&key=x", b"");
    assert_eq!(status, 500);
    assert!(body.contains("InvalidAddress"), "{body}");
    // Redis errors about a value's type come back as type-error.
    let set = format!("/redis/incr?addr={}&key=notanumber", redis.url);
    host.call("POST", &set, b"");
    let mut s = std::net::TcpStream::connect(redis.url.trim_start_matches("redis://")).unwrap();
    std::io::Write::write_all(&mut s, b"SET notanumber abc\r\n").unwrap();
    let mut buf = [0u8; 8];
    std::io::Read::read(&mut s, &mut buf).unwrap();
    let (status, body) = host.call("POST", &set, b"");
    assert_eq!(status, 500);
    assert!(body.contains("TypeError"), "{body}");
}

//! The pipeline driver end to end over `FakePlatform`: proxying and URL rewriting, header
//! hygiene, ids and trace context, local replies, failover, load balancing, config refresh
//! and the access log.

use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{
    Gateway, GatewayResponse, RequestHead, ResponseBody, RuntimeSettings,
};
use edgegate_core::platform::{UpstreamError, UpstreamResponse};
use edgegate_core::testing::{FakeBody, FakePlatform, SentRequest};
use futures::executor::block_on;
use serde_json::{json, Value};

// === fixtures ===

const CLIENT_IP: &str = "203.0.113.7";
const HOST: &str = "api.example.com";

/// The config most tests run on.
fn config() -> Value {
    json!({
        "gateway": { "strip_request_headers": ["X-Internal-User"] },
        "pools": {
            "users": { "instances": [{ "url": "http://10.0.0.1:8080/base" }], "timeout_ms": 5000 },
            "pair": { "instances": [{ "url": "http://10.0.1.1:8080" }, { "url": "http://10.0.1.2:8080" }] },
            "weighted": { "instances": [{ "url": "http://10.0.2.1:8080", "weight": 3 },
                                        { "url": "http://10.0.2.2:8080", "weight": 1 }] },
            "trio": { "instances": [{ "url": "http://10.0.3.1:8080" }, { "url": "http://10.0.3.2:8080" },
                                    { "url": "http://10.0.3.3:8080" }] }
        },
        "apis": [
            {
                "name": "users", "base_path": "/users-api",
                "versions": [{ "name": "v2", "pool": "users" }],
                "environments": [
                    { "name": "production", "hosts": ["api.example.com"] },
                    { "name": "staging" }
                ],
                "routes": [
                    { "name": "get-user", "methods": ["GET"], "path": "/users/{id}" },
                    { "name": "update-user", "methods": ["PUT", "POST", "DELETE"], "path": "/users/{id}" },
                    { "name": "me", "methods": ["GET"], "path": "/users/me", "upstream_path": "/whoami" }
                ]
            },
            {
                "name": "ha", "base_path": "/ha", "pool": "pair",
                "routes": [
                    { "name": "any", "path": "/{*rest}" },
                    { "name": "no-failover", "path": "/nf/{*rest}",
                      "policies": { "upstream": { "failover": false } } },
                    { "name": "small-replay", "path": "/small/{*rest}",
                      "policies": { "upstream": { "replay_buffer_bytes": 8 } } }
                ]
            },
            { "name": "lb", "base_path": "/lb", "pool": "weighted",
              "routes": [{ "name": "all", "path": "/{*rest}" }] },
            { "name": "down", "base_path": "/down", "pool": "trio",
              "routes": [{ "name": "all", "path": "/{*rest}" }] }
        ]
    })
}

/// A platform whose KV holds `doc` as version `v1`, pointed to.
fn platform_with(doc: &Value) -> FakePlatform {
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), &doc.to_string());
    p
}

fn gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    })
}

fn head(method: &str, path: &str) -> RequestHead {
    RequestHead {
        method: method.to_string(),
        scheme: "https".to_string(),
        host: HOST.to_string(),
        path: path.to_string(),
        query: None,
        headers: HeaderList::new(),
        client_ip: Some(CLIENT_IP.to_string()),
    }
}

fn with_headers(mut h: RequestHead, headers: &[(&str, &str)]) -> RequestHead {
    for (n, v) in headers {
        h.headers.append(n, *v);
    }
    h
}

fn call(
    gw: &Gateway,
    p: &FakePlatform,
    h: RequestHead,
    body: FakeBody,
) -> GatewayResponse<FakeBody> {
    block_on(gw.handle(p, h, body))
}

fn get(gw: &Gateway, p: &FakePlatform, path: &str) -> GatewayResponse<FakeBody> {
    call(gw, p, head("GET", path), FakeBody::Empty)
}

/// The log lines written so far (drained), split into access records and events.
fn logs(p: &FakePlatform) -> (Vec<Value>, Vec<Value>) {
    let mut access = Vec::new();
    let mut events = Vec::new();
    for line in p.take_logs() {
        assert!(!line.contains('\n'), "a log line spans lines: {line}");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match v["kind"].as_str() {
            Some("access") => access.push(v),
            Some("event") => events.push(v),
            other => panic!("unknown log kind {other:?}: {line}"),
        }
    }
    (access, events)
}

/// The single access record of the request just made (asserts there is exactly one).
fn access_log(p: &FakePlatform) -> Value {
    let (mut access, _) = logs(p);
    assert_eq!(
        access.len(),
        1,
        "exactly one access-log line per request: {access:#?}"
    );
    access.pop().unwrap()
}

fn events_named(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

/// The problem+json body of a local reply, after checking its framing headers.
fn problem(resp: &GatewayResponse<FakeBody>) -> Value {
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
    let ResponseBody::Bytes(bytes) = &resp.body else {
        panic!("expected a gateway-made body, got {:?}", resp.body);
    };
    assert_eq!(
        resp.header("content-length").as_deref(),
        Some(bytes.len().to_string().as_str())
    );
    let body: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(body["status"], resp.status);
    assert_eq!(
        body["type"],
        format!("urn:edgegate:problem:{}", body["code"].as_str().unwrap())
    );
    assert_eq!(
        body["request_id"].as_str(),
        resp.header("x-request-id").as_deref(),
        "the problem names the request id the response carries"
    );
    body
}

fn upstream_body(resp: &GatewayResponse<FakeBody>) -> &FakeBody {
    match &resp.body {
        ResponseBody::Upstream(b) => b,
        ResponseBody::Bytes(b) => panic!(
            "expected the backend's body, got a local reply: {}",
            String::from_utf8_lossy(b)
        ),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn refused(
    _: &SentRequest,
    _: &FakeBody,
    _: &FakePlatform,
) -> Result<UpstreamResponse<FakeBody>, UpstreamError> {
    Err(UpstreamError::Connect("connection refused".into()))
}

/// The first attempt cannot connect; later ones succeed.
fn first_attempt_refused(
    _: &SentRequest,
    _: &FakeBody,
    p: &FakePlatform,
) -> Result<UpstreamResponse<FakeBody>, UpstreamError> {
    // `sent` already holds the current attempt.
    if p.sent().len() == 1 {
        Err(UpstreamError::Connect("connection refused".into()))
    } else {
        Ok(FakePlatform::ok(&[], b"ok"))
    }
}

// === proxying ===

#[test]
fn proxied_request_is_rewritten_to_the_instance() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|req, _, _| {
        assert_eq!(
            req.headers.get("host"),
            None,
            "no Host: the platform sets it from the URL"
        );
        Ok(UpstreamResponse {
            status: 201,
            headers: HeaderList::from_pairs([
                ("Content-Type", "application/json"),
                ("Content-Length", "11"),
            ]),
            body: FakeBody::Stream(b"{\"ok\":true}".to_vec()),
        })
    });
    let mut h = with_headers(
        head("PUT", "/users-api/v2/users/a%2Cb"),
        &[
            ("Host", "api.example.com"),
            ("Content-Length", "5"),
            ("Content-Type", "text/plain"),
        ],
    );
    h.query = Some("x=1&y=a%20b+c".into());
    let resp = call(&gw, &p, h, FakeBody::Bytes(b"hello".to_vec()));

    assert_eq!(resp.status, 201);
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        upstream_body(&resp),
        &FakeBody::Stream(b"{\"ok\":true}".to_vec())
    );

    let sent = p.sent();
    assert_eq!(sent.len(), 1);
    let (req, body) = &sent[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(
        req.url,
        "http://10.0.0.1:8080/base/users/a%2Cb?x=1&y=a%20b+c"
    );
    assert_eq!(req.content_length, Some(5));
    assert_eq!(req.timeout_ms, 5000, "the pool's timeout");
    assert_eq!(req.headers.get("content-type"), Some("text/plain"));
    assert_eq!(
        req.headers.get("content-length"),
        None,
        "sent as UpstreamRequest::content_length"
    );
    assert_eq!(body, &FakeBody::Bytes(b"hello".to_vec()));

    // upstream_path template, no query, HEAD on a GET route.
    let resp = get(&gw, &p, "/users-api/v2/users/me");
    assert_eq!(resp.status, 201);
    let resp = call(
        &gw,
        &p,
        head("HEAD", "/users-api/v2/users/42"),
        FakeBody::Empty,
    );
    assert_eq!(resp.status, 201);
    let sent = p.sent();
    assert_eq!(sent[1].0.url, "http://10.0.0.1:8080/base/whoami");
    assert_eq!(sent[1].0.method, "GET");
    assert_eq!(sent[1].0.content_length, None);
    assert_eq!(sent[1].1, FakeBody::Empty);
    assert_eq!(sent[2].0.url, "http://10.0.0.1:8080/base/users/42");
    assert_eq!(sent[2].0.method, "HEAD");
}

#[test]
fn backend_errors_pass_through_untouched() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|_, _, _| {
        Ok(UpstreamResponse {
            status: 503,
            headers: HeaderList::from_pairs([("Retry-After", "5")]),
            body: FakeBody::Stream(b"busy".to_vec()),
        })
    });
    let resp = get(&gw, &p, "/users-api/v2/users/42");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after").as_deref(), Some("5"));
    assert_eq!(upstream_body(&resp), &FakeBody::Stream(b"busy".to_vec()));
    let log = access_log(&p);
    assert_eq!(log["status"], 503);
    assert_eq!(
        log["error_code"],
        Value::Null,
        "the backend's error is not the gateway's"
    );
}

#[test]
fn hop_by_hop_headers_are_stripped_both_ways() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|_, _, _| {
        Ok(FakePlatform::ok(
            &[
                ("Connection", "close, X-Resp-Hop"),
                ("X-Resp-Hop", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "h2c"),
                ("Proxy-Authenticate", "Basic"),
                ("Trailer", "x-checksum"),
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ],
            b"",
        ))
    });
    let h = with_headers(
        head("GET", "/users-api/v2/users/42"),
        &[
            ("Connection", "keep-alive, X-Hop"),
            ("Connection", "X-Other-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic abc"),
            ("Trailer", "x-checksum"),
            ("X-Hop", "1"),
            ("X-Other-Hop", "2"),
            ("Accept", "application/json"),
            ("Authorization", "Bearer t"),
            ("Cookie", "s=1"),
        ],
    );
    let resp = call(&gw, &p, h, FakeBody::Empty);

    let sent = p.sent();
    let names: Vec<&str> = sent[0].0.headers.iter().map(|(n, _)| n).collect();
    for gone in [
        "connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "trailer",
        "x-hop",
        "x-other-hop",
        "host",
    ] {
        assert!(!names.contains(&gone), "{gone} was forwarded: {names:?}");
    }
    for kept in ["accept", "authorization", "cookie"] {
        assert!(names.contains(&kept), "{kept} was dropped: {names:?}");
    }

    let list = resp.header_list();
    let names: Vec<&str> = list.iter().map(|(n, _)| n).collect();
    for gone in [
        "connection",
        "x-resp-hop",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "trailer",
    ] {
        assert!(!names.contains(&gone), "{gone} was returned: {names:?}");
    }
    assert_eq!(resp.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(
        resp.header_list().get_all("set-cookie").collect::<Vec<_>>(),
        vec!["a=1", "b=2"],
        "repeated fields survive"
    );
}

#[test]
fn spoofable_headers_are_replaced_by_the_gateway_s_own() {
    let p = platform_with(&config());
    let gw = gateway();
    let mut h = with_headers(
        head("GET", "/users-api/v2/users/42"),
        &[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Prefix", "/admin"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("True-Client-IP", "1.2.3.4"),
            ("X-Client-IP", "1.2.3.4"),
            ("X-Cluster-Client-IP", "1.2.3.4"),
            ("CF-Connecting-IP", "1.2.3.4"),
            ("CF-Ray", "abc"),
            ("X-Edgegate-Consumer", "admin"),
            ("x-internal-user", "root"),
            ("X-Internal-Userish", "kept"),
            ("Accept", "*/*"),
        ],
    );
    h.host = "API.Example.com:8443".into();
    call(&gw, &p, h, FakeBody::Empty);

    let sent = p.sent();
    let up = &sent[0].0.headers;
    for gone in [
        "x-forwarded-prefix",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "cf-ray",
        "x-edgegate-consumer",
        "x-internal-user",
    ] {
        assert_eq!(up.get(gone), None, "{gone} reached the backend");
    }
    assert_eq!(up.get("x-internal-userish"), Some("kept"));
    assert_eq!(up.get("accept"), Some("*/*"));
    for (name, value) in [
        ("x-forwarded-for", CLIENT_IP),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "API.Example.com:8443"),
        (
            "forwarded",
            "for=203.0.113.7;host=\"API.Example.com:8443\";proto=https",
        ),
    ] {
        assert_eq!(up.get_all(name).collect::<Vec<_>>(), vec![value], "{name}");
    }
    // The host was matched without its port and case-insensitively.
    let log = access_log(&p);
    assert_eq!(log["environment"], "production");
    assert_eq!(log["host"], "API.Example.com:8443");
}

#[test]
fn unknown_client_address_is_forwarded_as_unknown() {
    let p = platform_with(&config());
    let gw = gateway();
    let mut h = head("GET", "/users-api/v2/users/42");
    h.client_ip = None;
    h.scheme = "http".into();
    call(&gw, &p, h, FakeBody::Empty);
    let up = &p.sent()[0].0.headers;
    assert_eq!(up.get("x-forwarded-for"), Some("unknown"));
    assert_eq!(up.get("x-forwarded-proto"), Some("http"));
    assert_eq!(
        up.get("forwarded"),
        Some("for=unknown;host=api.example.com;proto=http")
    );
}

fn trusting_config() -> Value {
    let mut c = config();
    c["gateway"]["trust_forwarded"] = json!(true);
    c
}

#[test]
fn trust_forwarded_appends_to_the_client_s_chain() {
    let p = platform_with(&trusting_config());
    let gw = gateway();
    let h = with_headers(
        head("GET", "/users-api/v2/users/42"),
        &[
            ("X-Forwarded-For", "198.51.100.1, 198.51.100.2"),
            ("Forwarded", "for=198.51.100.1"),
            ("X-Real-IP", "198.51.100.1"),
        ],
    );
    call(&gw, &p, h, FakeBody::Empty);
    let up = &p.sent()[0].0.headers;
    assert_eq!(
        up.get_all("x-forwarded-for").collect::<Vec<_>>(),
        vec!["198.51.100.1, 198.51.100.2, 203.0.113.7"]
    );
    assert_eq!(
        up.get_all("forwarded").collect::<Vec<_>>(),
        vec!["for=198.51.100.1, for=203.0.113.7;host=api.example.com;proto=https"]
    );
    assert_eq!(
        up.get("x-real-ip"),
        None,
        "still stripped when trusting forwarding headers"
    );

    // Without a client chain, trusting changes nothing.
    call(
        &gw,
        &p,
        head("GET", "/users-api/v2/users/42"),
        FakeBody::Empty,
    );
    assert_eq!(
        p.sent()[1].0.headers.get("x-forwarded-for"),
        Some(CLIENT_IP)
    );
}

/// A client chain split over several `X-Forwarded-For` field lines is one list (RFC 9110
/// §5.3); appending to the first line only drops the hops in the others.
#[test]
fn trust_forwarded_keeps_every_field_line_of_the_chain() {
    let p = platform_with(&trusting_config());
    let gw = gateway();
    let h = with_headers(
        head("GET", "/users-api/v2/users/42"),
        &[
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-For", "198.51.100.2"),
            ("Forwarded", "for=198.51.100.1"),
            ("Forwarded", "for=198.51.100.2"),
        ],
    );
    call(&gw, &p, h, FakeBody::Empty);
    let up = &p.sent()[0].0.headers;
    assert_eq!(
        up.get("x-forwarded-for"),
        Some("198.51.100.1, 198.51.100.2, 203.0.113.7")
    );
    assert_eq!(
        up.get("forwarded"),
        Some(
            "for=198.51.100.1, for=198.51.100.2, for=203.0.113.7;host=api.example.com;proto=https"
        )
    );
}

// === request id and trace context ===

#[test]
fn request_id_is_kept_when_sane_and_generated_otherwise() {
    let p = platform_with(&config());
    let gw = gateway();
    // (incoming X-Request-ID, kept?)
    let (max, too_long) = ("a".repeat(128), "a".repeat(129));
    let cases: &[(Option<&str>, bool)] = &[
        (Some("abc-123"), true),
        (Some("req:2024/01/01+x=y.z_"), true),
        (Some(&max), true),
        (Some(&too_long), false),
        (Some("has space"), false),
        (Some("<script>"), false),
        (Some(""), false),
        (None, false),
    ];
    let mut generated = Vec::new();
    for (incoming, kept) in cases {
        let mut h = head("GET", "/users-api/v2/users/42");
        if let Some(id) = incoming {
            h.headers.append("X-Request-ID", *id);
        }
        let resp = call(&gw, &p, h, FakeBody::Empty);
        let echoed = resp.header("x-request-id").as_deref().unwrap().to_string();
        if *kept {
            assert_eq!(Some(echoed.as_str()), *incoming);
        } else {
            assert!(
                is_hex(&echoed, 32),
                "generated id {echoed:?} for {incoming:?}"
            );
            generated.push(echoed.clone());
        }
        let sent = p.sent();
        let up = &sent.last().unwrap().0.headers;
        assert_eq!(
            up.get_all("x-request-id").collect::<Vec<_>>(),
            vec![echoed.as_str()],
            "one X-Request-ID upstream for {incoming:?}"
        );
        assert_eq!(access_log(&p)["request_id"], echoed.as_str());
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 5, "each generated id is new");

    // The id is echoed on local replies too.
    let h = with_headers(head("GET", "/nowhere"), &[("X-Request-ID", "local-1")]);
    let resp = call(&gw, &p, h, FakeBody::Empty);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("x-request-id").as_deref(), Some("local-1"));
    assert_eq!(problem(&resp)["request_id"], "local-1");
    assert_eq!(access_log(&p)["request_id"], "local-1");
}

#[test]
fn traceparent_is_propagated_with_a_new_span_or_generated() {
    let p = platform_with(&config());
    let gw = gateway();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let h = with_headers(
        head("GET", "/users-api/v2/users/42"),
        &[("traceparent", incoming)],
    );
    call(&gw, &p, h, FakeBody::Empty);
    let sent = p.sent();
    let tp: Vec<&str> = sent[0].0.headers.get_all("traceparent").collect();
    assert_eq!(tp.len(), 1);
    let parts: Vec<&str> = tp[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", tp[0]);
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert!(
        is_hex(parts[2], 16) && parts[2] != "00f067aa0ba902b7",
        "new span: {}",
        tp[0]
    );
    assert_eq!(parts[3], "00", "flags kept");
    assert_eq!(
        access_log(&p)["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    // None, or an invalid one: a new trace, sampled.
    for bad in [None, Some("00-XYZ-00f067aa0ba902b7-01"), Some("garbage")] {
        let mut h = head("GET", "/users-api/v2/users/42");
        if let Some(b) = bad {
            h.headers.append("traceparent", b);
        }
        call(&gw, &p, h, FakeBody::Empty);
        let sent = p.sent();
        let tp = sent
            .last()
            .unwrap()
            .0
            .headers
            .get("traceparent")
            .unwrap()
            .to_string();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert!(
            is_hex(parts[1], 32) && parts[1] != "4bf92f3577b34da6a3ce929d0e0e4736",
            "{tp}"
        );
        assert!(parts[1].bytes().any(|b| b != b'0'), "{tp}");
        assert!(
            is_hex(parts[2], 16) && parts[2].bytes().any(|b| b != b'0'),
            "{tp}"
        );
        assert_eq!(parts[3], "01", "{tp}");
        assert_eq!(access_log(&p)["trace_id"], parts[1], "for {bad:?}");
    }
}

// === local replies ===

#[test]
fn not_found_and_method_not_allowed_are_problem_json() {
    let p = platform_with(&config());
    let gw = gateway();

    let resp = get(&gw, &p, "/nowhere");
    assert_eq!(resp.status, 404);
    let body = problem(&resp);
    assert_eq!(body["code"], "route_not_found");
    assert_eq!(body["status"], 404);
    assert!(body["title"].is_string());
    assert_eq!(resp.header("allow").as_deref(), None);
    let log = access_log(&p);
    assert_eq!(
        (log["status"].clone(), log["error_code"].clone()),
        (json!(404), json!("route_not_found"))
    );
    assert_eq!(log["route"], Value::Null);
    assert_eq!(log["upstream"], Value::Null);
    assert_eq!(log["attempts"], 0);

    let resp = call(
        &gw,
        &p,
        head("PATCH", "/users-api/v2/users/me"),
        FakeBody::Empty,
    );
    assert_eq!(resp.status, 405);
    let body = problem(&resp);
    assert_eq!(body["code"], "method_not_allowed");
    assert_eq!(body["status"], 405);
    assert_eq!(
        resp.header("allow").as_deref(),
        Some("GET, HEAD, POST, PUT, DELETE")
    );
    assert_eq!(
        body["detail"],
        "allowed methods: GET, HEAD, POST, PUT, DELETE"
    );
    assert_eq!(access_log(&p)["error_code"], "method_not_allowed");

    assert!(p.sent().is_empty(), "nothing went upstream");
}

#[test]
fn dot_segments_are_rejected_as_invalid_paths() {
    let p = platform_with(&config());
    let gw = gateway();
    for path in [
        "/a/../b",
        "/a/%2E%2e/b",
        "/users-api/v2/users/..",
        "/users-api/v2/users/%2e",
        "/./users-api/v2/users/42",
        "/users-api/v2/users/42/%2E",
        "users-api/v2/users/42",
        "*",
    ] {
        let resp = get(&gw, &p, path);
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(problem(&resp)["code"], "invalid_path", "{path}");
        let log = access_log(&p);
        assert_eq!(log["error_code"], "invalid_path", "{path}");
        assert_eq!(log["path"], path);
    }
    // Dots inside a segment are fine.
    for path in [
        "/users-api/v2/users/...",
        "/users-api/v2/users/a..b",
        "/users-api/v2/users/%2e%2e%2e",
    ] {
        assert_eq!(get(&gw, &p, path).status, 200, "{path}");
        access_log(&p);
    }
    assert_eq!(p.sent().len(), 3);
}

#[test]
fn no_pointer_means_no_config() {
    let p = FakePlatform::new();
    let gw = gateway();
    let resp = get(&gw, &p, "/users-api/v2/users/42");
    assert_eq!(resp.status, 503);
    assert_eq!(problem(&resp)["code"], "no_config");
    let log = access_log(&p);
    assert_eq!(log["error_code"], "no_config");
    assert_eq!(log["config_version"], Value::Null);
    assert!(p.sent().is_empty());
}

// === upstream failures and failover ===

#[test]
fn timeout_is_504_and_never_retried() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|_, _, _| Err(UpstreamError::Timeout));
    let resp = get(&gw, &p, "/ha/slow");
    assert_eq!(resp.status, 504);
    let body = problem(&resp);
    assert_eq!(body["code"], "upstream_timeout");
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&body).unwrap()).contains("10.0."));
    assert_eq!(p.sent().len(), 1, "no failover after a timeout");
    let log = access_log(&p);
    assert_eq!(log["error_code"], "upstream_timeout");
    assert_eq!(log["attempts"], 1);
    assert!(
        log["error_detail"].as_str().unwrap().contains("10.0.1."),
        "{log}"
    );
}

#[test]
fn connect_failure_fails_over_for_get() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(first_attempt_refused);
    let mut h = head("GET", "/ha/items");
    h.query = Some("q=1".into());
    let resp = call(&gw, &p, h, FakeBody::Empty);
    assert_eq!(resp.status, 200);
    let sent = p.sent();
    assert_eq!(sent.len(), 2);
    assert_ne!(
        sent[0].0.url, sent[1].0.url,
        "the second attempt goes to the other instance"
    );
    for (req, _) in &sent {
        assert!(req.url.ends_with(":8080/items?q=1"), "{}", req.url);
    }
    let log = access_log(&p);
    assert_eq!(log["attempts"], 2);
    assert_eq!(log["status"], 200);
    assert_eq!(log["error_code"], Value::Null);
    assert_eq!(
        log["upstream"].as_str().unwrap(),
        sent[1].0.url.trim_end_matches("/items?q=1"),
        "the access log names the instance of the last attempt"
    );
}

#[test]
fn connect_failure_fails_over_for_put_with_a_buffered_stream_body() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(first_attempt_refused);
    let h = with_headers(head("PUT", "/ha/items/1"), &[("Content-Length", "5")]);
    let resp = call(&gw, &p, h, FakeBody::Stream(b"hello".to_vec()));
    assert_eq!(resp.status, 200);
    let sent = p.sent();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].0.url, sent[1].0.url);
    for (req, body) in &sent {
        assert_eq!(req.method, "PUT");
        assert_eq!(req.content_length, Some(5));
        assert_eq!(
            body,
            &FakeBody::Bytes(b"hello".to_vec()),
            "buffered, sent whole each time"
        );
    }
    assert_eq!(access_log(&p)["attempts"], 2);
}

/// Hosts may hand over an empty stream for `Content-Length: 0`; it is sent as no body, which
/// can be replayed, so the request still fails over.
#[test]
fn declared_empty_body_fails_over() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(first_attempt_refused);
    let h = with_headers(head("DELETE", "/ha/items/1"), &[("Content-Length", "0")]);
    let resp = call(&gw, &p, h, FakeBody::Stream(Vec::new()));
    assert_eq!(resp.status, 200);
    let sent = p.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, body)| *body == FakeBody::Empty));
    assert_eq!(access_log(&p)["attempts"], 2);
}

#[test]
fn no_failover_for_post_large_bodies_or_when_disabled() {
    // (method, path, content-length, body, expected body sent)
    let big = vec![b'x'; 20];
    let cases: Vec<(&str, &str, Option<&str>, FakeBody)> = vec![
        (
            "POST",
            "/ha/orders",
            Some("5"),
            FakeBody::Stream(b"hello".to_vec()),
        ),
        ("POST", "/ha/orders", None, FakeBody::Empty),
        (
            "PUT",
            "/ha/small/x",
            Some("20"),
            FakeBody::Stream(big.clone()),
        ),
        (
            "PUT",
            "/ha/items/1",
            None,
            FakeBody::Stream(b"chunked".to_vec()),
        ),
        ("GET", "/ha/nf/x", None, FakeBody::Empty),
        (
            "PUT",
            "/ha/nf/x",
            Some("5"),
            FakeBody::Stream(b"hello".to_vec()),
        ),
    ];
    for (method, path, len, body) in cases {
        let p = platform_with(&config());
        let gw = gateway();
        p.on_upstream(refused);
        let mut h = head(method, path);
        if let Some(l) = len {
            h.headers.append("content-length", l);
        }
        let resp = call(&gw, &p, h, body.clone());
        assert_eq!(resp.status, 502, "{method} {path}");
        assert_eq!(problem(&resp)["code"], "upstream_unreachable");
        let sent = p.sent();
        assert_eq!(sent.len(), 1, "{method} {path}: one attempt only");
        assert_eq!(
            sent[0].1, body,
            "{method} {path}: the body is streamed, not buffered"
        );
        assert_eq!(access_log(&p)["attempts"], 1, "{method} {path}");
    }
}

#[test]
fn a_small_body_within_the_replay_limit_is_replayed() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(first_attempt_refused);
    let h = with_headers(head("PUT", "/ha/small/x"), &[("Content-Length", "8")]);
    let resp = call(&gw, &p, h, FakeBody::Stream(b"12345678".to_vec()));
    assert_eq!(resp.status, 200);
    let sent = p.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .all(|(_, b)| *b == FakeBody::Bytes(b"12345678".to_vec())));
}

#[test]
fn all_instances_down_is_502_without_internal_addresses() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(refused);
    let resp = get(&gw, &p, "/down/x");
    assert_eq!(resp.status, 502);
    let ResponseBody::Bytes(bytes) = &resp.body else {
        panic!()
    };
    let text = String::from_utf8_lossy(bytes).to_string();
    assert!(!text.contains("10.0.3."), "internal address leaked: {text}");
    assert!(!text.contains("refused"), "internal detail leaked: {text}");
    assert_eq!(problem(&resp)["code"], "upstream_unreachable");
    assert_eq!(p.sent().len(), 3, "each instance once");

    let log = access_log(&p);
    assert_eq!(log["status"], 502);
    assert_eq!(log["error_code"], "upstream_unreachable");
    assert_eq!(log["attempts"], 3);
    let detail = log["error_detail"].as_str().unwrap();
    for addr in [
        "http://10.0.3.1:8080",
        "http://10.0.3.2:8080",
        "http://10.0.3.3:8080",
    ] {
        assert!(detail.contains(addr), "{addr} missing from {detail}");
    }
    assert!(detail.contains("connection refused"), "{detail}");
}

#[test]
fn weighted_round_robin_is_exact() {
    let p = platform_with(&config());
    let gw = gateway();
    for i in 0..40 {
        assert_eq!(get(&gw, &p, &format!("/lb/{i}")).status, 200);
    }
    let sent = p.sent();
    assert_eq!(sent.len(), 40);
    let heavy = sent
        .iter()
        .filter(|(r, _)| r.url.starts_with("http://10.0.2.1:8080/"))
        .count();
    let light = sent
        .iter()
        .filter(|(r, _)| r.url.starts_with("http://10.0.2.2:8080/"))
        .count();
    assert_eq!((heavy, light), (30, 10));
    // Smooth: never more than three heavy picks in a row.
    let picks: String = sent
        .iter()
        .map(|(r, _)| if r.url.contains("10.0.2.1") { 'a' } else { 'b' })
        .collect();
    assert!(!picks.contains("aaaa"), "{picks}");
    let (access, _) = logs(&p);
    assert_eq!(access.len(), 40);
}

// === config refresh ===

fn config_v2() -> Value {
    let mut c = config();
    c["pools"]["users"]["instances"][0]["url"] = json!("http://10.9.9.9:8080");
    c
}

fn invalid_config() -> Value {
    let mut c = config();
    c["pools"]["users"]["instances"][0]["url"] = json!("ftp://nope");
    c
}

#[test]
fn refresh_activates_valid_versions_and_never_invalid_ones() {
    let p = platform_with(&config());
    let gw = gateway();
    let last_url = |p: &FakePlatform| p.sent().last().unwrap().0.url.clone();

    assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 200);
    assert_eq!(last_url(&p), "http://10.0.0.1:8080/base/users/1");
    let (access, events) = logs(&p);
    assert_eq!(access[0]["config_version"], "v1");
    assert_eq!(events_named(&events, "config_activated"), 1);

    // The pointer moves; nothing changes until the refresh interval has passed.
    p.kv_put(&version_key("v2"), &config_v2().to_string());
    p.kv_put(POINTER_KEY, "v2");
    let reads = p.kv_reads();
    p.advance(999);
    for _ in 0..3 {
        get(&gw, &p, "/users-api/v2/users/1");
    }
    assert_eq!(p.kv_reads(), reads, "no KV reads within the interval");
    let (access, _) = logs(&p);
    assert!(access.iter().all(|a| a["config_version"] == "v1"));

    p.advance(1);
    get(&gw, &p, "/users-api/v2/users/1");
    assert_eq!(last_url(&p), "http://10.9.9.9:8080/users/1");
    let (access, events) = logs(&p);
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["config_version"], "v2");
    let activated: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "config_activated")
        .collect();
    assert_eq!(activated.len(), 1);
    assert_eq!(activated[0]["version"], "v2");
    assert_eq!(activated[0]["previous"], "v1");

    // An invalid v3 is rejected once and v2 keeps serving.
    p.kv_put(&version_key("v3"), &invalid_config().to_string());
    p.kv_put(POINTER_KEY, "v3");
    for _ in 0..5 {
        p.advance(1000);
        assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 200);
        assert_eq!(last_url(&p), "http://10.9.9.9:8080/users/1");
        get(&gw, &p, "/users-api/v2/users/2");
    }
    let (access, events) = logs(&p);
    assert_eq!(access.len(), 10);
    assert!(
        access.iter().all(|a| a["config_version"] == "v2"),
        "{access:#?}"
    );
    assert_eq!(events_named(&events, "config_rejected"), 1, "{events:#?}");
    assert_eq!(events_named(&events, "config_activated"), 0);
    let rejected = events
        .iter()
        .find(|e| e["event"] == "config_rejected")
        .unwrap();
    assert_eq!(rejected["version"], "v3");
    assert_eq!(rejected["serving"], "v2");
    assert_eq!(rejected["error_count"], 1);
    assert_eq!(
        rejected["errors"][0]["path"],
        "$.pools.users.instances[0].url"
    );
    assert_eq!(gw.config_store().active().unwrap().version(), "v2");

    // Rolling the pointer back is a no-op; a fixed v4 activates.
    p.kv_put(POINTER_KEY, "v2");
    p.advance(1000);
    get(&gw, &p, "/users-api/v2/users/1");
    let (_, events) = logs(&p);
    assert!(events.is_empty(), "{events:#?}");
    p.kv_put(&version_key("v4"), &config().to_string());
    p.kv_put(POINTER_KEY, "v4");
    p.advance(1000);
    get(&gw, &p, "/users-api/v2/users/1");
    assert_eq!(last_url(&p), "http://10.0.0.1:8080/base/users/1");
    let (access, events) = logs(&p);
    assert_eq!(access[0]["config_version"], "v4");
    assert_eq!(events_named(&events, "config_activated"), 1);
}

#[test]
fn a_kv_outage_keeps_the_last_good_config() {
    let p = platform_with(&config());
    let gw = gateway();
    assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 200);
    logs(&p);

    p.set_kv_down(true);
    p.kv_put(&version_key("v2"), &config_v2().to_string());
    p.kv_put(POINTER_KEY, "v2");
    for _ in 0..3 {
        p.advance(1000);
        let resp = get(&gw, &p, "/users-api/v2/users/1");
        assert_eq!(resp.status, 200);
    }
    let (access, events) = logs(&p);
    assert_eq!(access.len(), 3);
    assert!(access
        .iter()
        .all(|a| a["config_version"] == "v1" && a["status"] == 200));
    assert_eq!(
        events_named(&events, "config_store_error"),
        3,
        "one per refresh: {events:#?}"
    );

    p.set_kv_down(false);
    p.advance(1000);
    get(&gw, &p, "/users-api/v2/users/1");
    assert_eq!(
        p.sent().last().unwrap().0.url,
        "http://10.9.9.9:8080/users/1"
    );
    assert_eq!(access_log(&p)["config_version"], "v2");
}

#[test]
fn without_any_valid_config_requests_get_503() {
    // The pointer names an invalid document.
    let p = platform_with(&invalid_config());
    let gw = gateway();
    for _ in 0..3 {
        let resp = get(&gw, &p, "/users-api/v2/users/1");
        assert_eq!(resp.status, 503);
        assert_eq!(problem(&resp)["code"], "no_config");
        p.advance(1000);
    }
    let (access, events) = logs(&p);
    assert_eq!(access.len(), 3);
    assert!(access
        .iter()
        .all(|a| a["error_code"] == "no_config" && a["config_version"].is_null()));
    assert_eq!(events_named(&events, "config_rejected"), 1, "{events:#?}");
    assert!(gw.config_store().active().is_none());
    assert!(p.sent().is_empty());

    // The pointer names a version with no document.
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v9");
    let gw = gateway();
    assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 503);
    let (_, events) = logs(&p);
    assert_eq!(events_named(&events, "config_version_missing"), 1);

    // Once a valid version is pointed to, the next refresh activates it.
    p.kv_put(&version_key("v10"), &config().to_string());
    p.kv_put(POINTER_KEY, "v10");
    p.advance(1000);
    assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 200);
    assert_eq!(access_log(&p)["config_version"], "v10");
}

/// Workers KV is eventually consistent per key: an edge can see a new pointer before the
/// document it names. A version whose document is *missing* must be retried at the next
/// refresh; today it is remembered as rejected and never read again, so the isolate keeps
/// serving the old config (or 503s) until it is recycled.
#[test]
fn a_version_whose_document_arrives_late_is_activated() {
    let p = platform_with(&config());
    let gw = gateway();
    get(&gw, &p, "/users-api/v2/users/1");
    // The pointer is visible before the document.
    p.kv_put(POINTER_KEY, "v2");
    p.advance(1000);
    assert_eq!(get(&gw, &p, "/users-api/v2/users/1").status, 200);
    assert_eq!(gw.config_store().active().unwrap().version(), "v1");
    // The document shows up.
    p.kv_put(&version_key("v2"), &config_v2().to_string());
    p.advance(1000);
    get(&gw, &p, "/users-api/v2/users/1");
    assert_eq!(
        gw.config_store().active().unwrap().version(),
        "v2",
        "v2 should be activated once its document is readable"
    );
    assert_eq!(
        p.sent().last().unwrap().0.url,
        "http://10.9.9.9:8080/users/1"
    );
}

// === access log ===

const ACCESS_FIELDS: [&str; 27] = [
    "kind",
    "time",
    "request_id",
    "trace_id",
    "method",
    "host",
    "path",
    "client_ip",
    "route",
    "api",
    "version",
    "environment",
    "status",
    "error_code",
    "error_detail",
    "bytes_in",
    "bytes_out",
    "upstream",
    "attempts",
    "gateway_ms",
    "backend_ms",
    "config_version",
    "auth_method",
    "subject",
    "application",
    "subscription",
    "scopes",
];

#[test]
fn access_log_records_every_documented_field() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|_, _, p| {
        p.advance(25);
        Ok(FakePlatform::ok(&[("Content-Length", "2")], b"ok"))
    });
    let mut h = with_headers(
        head("PUT", "/users-api/v2/users/42"),
        &[("Content-Length", "5"), ("X-Request-ID", "rid-1")],
    );
    h.query = Some("token=secret".into());
    call(&gw, &p, h, FakeBody::Bytes(b"hello".to_vec()));
    let log = access_log(&p);
    let mut keys: Vec<&str> = log
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut want = ACCESS_FIELDS.to_vec();
    want.sort();
    assert_eq!(keys, want);

    let expect = json!({
        "kind": "access",
        "time": "2023-11-14T22:13:20.000Z",
        "request_id": "rid-1",
        "method": "PUT",
        "host": "api.example.com",
        "path": "/users-api/v2/users/42",
        "client_ip": CLIENT_IP,
        "route": "update-user",
        "api": "users",
        "version": "v2",
        "environment": "production",
        "status": 200,
        "error_code": null,
        "error_detail": null,
        "bytes_in": 5,
        "bytes_out": 2,
        "upstream": "http://10.0.0.1:8080/base",
        "attempts": 1,
        "gateway_ms": 0,
        "backend_ms": 25,
        "config_version": "v1",
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&log[k], v, "field {k}");
    }
    assert!(is_hex(log["trace_id"].as_str().unwrap(), 32));
    assert!(
        !log.to_string().contains("secret"),
        "the query is never logged"
    );

    // A local reply: no route, no upstream, no backend time.
    p.advance(1000);
    get(&gw, &p, "/nowhere");
    let log = access_log(&p);
    for (k, v) in [
        ("route", Value::Null),
        ("api", Value::Null),
        ("version", Value::Null),
        ("environment", Value::Null),
        ("upstream", Value::Null),
        ("backend_ms", Value::Null),
        ("bytes_in", Value::Null),
        ("attempts", json!(0)),
        ("status", json!(404)),
        ("error_code", json!("route_not_found")),
        ("config_version", json!("v1")),
        ("time", json!("2023-11-14T22:13:21.025Z")),
    ] {
        assert_eq!(log[k], v, "field {k}");
    }
    assert!(log["bytes_out"].as_u64().unwrap() > 0);
}

#[test]
fn exactly_one_access_line_per_request() {
    let p = platform_with(&config());
    let gw = gateway();
    p.on_upstream(|req, _, _| {
        if req.url.contains("10.0.3.") {
            Err(UpstreamError::Connect("down".into()))
        } else if req.url.contains("/slow") {
            Err(UpstreamError::Timeout)
        } else {
            Ok(FakePlatform::ok(&[], b""))
        }
    });
    let requests: Vec<(&str, &str, u16)> = vec![
        ("GET", "/users-api/v2/users/1", 200),
        ("GET", "/nowhere", 404),
        ("PATCH", "/users-api/v2/users/1", 405),
        ("GET", "/a/../b", 400),
        ("GET", "/down/x", 502),
        ("GET", "/ha/slow", 504),
        ("DELETE", "/users-api/v2/users/1", 200),
    ];
    for (method, path, status) in &requests {
        let resp = call(&gw, &p, head(method, path), FakeBody::Empty);
        assert_eq!(resp.status, *status, "{method} {path}");
    }
    let (access, events) = logs(&p);
    assert_eq!(access.len(), requests.len());
    for (log, (method, path, status)) in access.iter().zip(&requests) {
        assert_eq!(
            (log["method"].as_str(), log["path"].as_str()),
            (Some(*method), Some(*path))
        );
        assert_eq!(log["status"], *status);
        assert_eq!(log["config_version"], "v1");
    }
    assert_eq!(events_named(&events, "config_activated"), 1);
    assert_eq!(events.len(), 1, "{events:#?}");
}

/// Encoded slashes are refused by default (a decoding backend would see other segments than
/// the router matched) and passed through when the gateway allows them; encoded unreserved
/// characters are decoded before routing, so `/users/m%65` is the literal `/users/me` route.
#[test]
fn paths_are_normalized_before_routing() {
    let p = platform_with(&config());
    let gw = gateway();
    let resp = get(&gw, &p, "/users-api/v2/users/a%2Fb");
    assert_eq!(resp.status, 400);
    assert_eq!(access_log(&p)["error_code"], "invalid_path");
    assert!(p.sent().is_empty());

    assert_eq!(get(&gw, &p, "/users-api/v2/users/m%65").status, 200);
    assert_eq!(access_log(&p)["route"], "me");
    assert!(p.sent().last().unwrap().0.url.ends_with("/whoami"));

    let mut cfg = config();
    cfg["gateway"]["allow_encoded_slashes"] = serde_json::json!(true);
    let p = platform_with(&cfg);
    let gw = gateway();
    assert_eq!(get(&gw, &p, "/users-api/v2/users/a%2fb").status, 200);
    assert!(
        p.sent().last().unwrap().0.url.ends_with("/users/a%2Fb"),
        "{:?}",
        p.sent().last().unwrap().0.url
    );
}

/// Requests that arrive together on a cold isolate share one compile: the config is activated
/// once, not once per request.
#[test]
fn concurrent_cold_requests_compile_the_config_once() {
    let p = platform_with(&config());
    p.set_kv_yields(true);
    let gw = gateway();
    let reqs = (0..5).map(|_| gw.handle(&p, head("GET", "/users-api/v2/users/1"), FakeBody::Empty));
    let responses = futures::executor::block_on(futures::future::join_all(reqs));
    assert!(responses.iter().all(|r| r.status == 200));
    let (_, events) = logs(&p);
    assert_eq!(events_named(&events, "config_activated"), 1, "{events:#?}");
}

//! The rate-limit stage through the pipeline over the fake platform: limits from config at
//! gateway, API and route level on the in-memory counters, the response header fields (parsed
//! back with `sfv`), 429 and 503 replies, quota warnings, several limits on one request and
//! their keys, per-subscription and per-plan limits from a Registry snapshot, shadow mode,
//! counter outages, approximate mode (leases and its error bound), shards, queueing, the
//! failed-authentication limit, and config errors with their JSON paths.
//!
//! Times: `FakePlatform::new` starts at 1,700,000,000,000 ms (2023-11-14T22:13:20Z), which is
//! 20 s into a fixed 60 s window and on a whole second; the expected numbers below are worked
//! out by hand from the algorithms' documentation, not from their code.

mod common;

use edgegate_core::auth::{credential_key, JwsAlgorithm, PublicKey};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::{
    ClientCertificate, ClientCertificates, ClientGeo, Clock, CounterCall, CounterReply, Counters,
    Crypto, Http, HttpRequest, HttpResponse, Instances, Kv, Log, PlatformError, Random, Secrets,
    SharedCache, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use edgegate_core::ratelimit::LEASE_MS;
use edgegate_core::snapshot::{encode, from_json, shard, MANIFEST_KEY, SHARD_PREFIX};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::Cell;

// === fixtures ===

/// The fake clock's start (unix ms).
const T0: u64 = 1_700_000_000_000;
const IP1: &str = "203.0.113.1";
const IP2: &str = "203.0.113.2";
const IP3: &str = "203.0.113.3";
const IP4: &str = "203.0.113.4";

/// One API `a` with routes `r1` (`/a/r1`) and `r2` (`/a/r2`), no authentication, and these
/// `rate_limits` at gateway, API and `r1` level.
fn config(gateway: Value, api: Value, r1: Value) -> Value {
    json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "gateway": { "policies": { "rate_limits": gateway } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "policies": { "rate_limits": api },
            "routes": [
                { "name": "r1", "path": "/r1", "policies": { "rate_limits": r1 } },
                { "name": "r2", "path": "/r2" }
            ]
        }]
    })
}

/// A sliding-window limit of `limit` per 60 s.
fn sw(name: &str, key: &str, limit: u64) -> Value {
    json!({"name": name, "key": key, "algorithm": "sliding_window", "limit": limit, "window_s": 60})
}

/// `base` with the keys of `over` set (a null removes the key).
fn with(base: &Value, over: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in over.as_object().expect("object") {
        if v.is_null() {
            out.as_object_mut().expect("object").remove(k);
        } else {
            out[k] = v.clone();
        }
    }
    out
}

fn head(path: &str, ip: Option<&str>, headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: path.into(),
        query: None,
        headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
        client_ip: ip.map(str::to_string),
    }
}

fn call(gw: &Gateway, p: &FakePlatform, path: &str, ip: Option<&str>) -> GatewayResponse<FakeBody> {
    block_on(gw.handle(p, head(path, ip, &[]), FakeBody::Empty))
}

fn call_with_key(
    gw: &Gateway,
    p: &FakePlatform,
    path: &str,
    ip: Option<&str>,
    key: Option<&str>,
) -> GatewayResponse<FakeBody> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    block_on(gw.handle(p, head(path, ip, &headers), FakeBody::Empty))
}

/// The log events named `name` among `logs`.
fn events(logs: &[String], name: &str) -> Vec<Value> {
    logs.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event" && v["event"] == name)
        .collect()
}

/// The access-log record among `logs` (exactly one per request).
fn access(logs: &[String]) -> Value {
    let records: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "access")
        .collect();
    assert_eq!(records.len(), 1, "{logs:?}");
    records[0].clone()
}

/// A structured-field list (RFC 9651) of strings with integer parameters, parsed with `sfv`:
/// `(name, [(param, value)])`. Panics if the field is not valid.
fn sf_list(field: &str) -> Vec<(String, Vec<(String, i64)>)> {
    use sfv::{BareItem, List, ListEntry, Parser};
    let list: List = Parser::new(field)
        .parse()
        .unwrap_or_else(|e| panic!("{field:?} is not a structured-field list: {e:?}"));
    list.into_iter()
        .map(|entry| {
            let ListEntry::Item(item) = entry else {
                panic!("inner list in {field:?}")
            };
            let BareItem::String(name) = item.bare_item else {
                panic!("not a string item in {field:?}")
            };
            let params = item
                .params
                .into_iter()
                .map(|(k, v)| {
                    let BareItem::Integer(n) = v else {
                        panic!("a parameter that is not an integer in {field:?}")
                    };
                    (k.as_str().to_owned(), i64::from(n))
                })
                .collect();
            (name.as_str().to_owned(), params)
        })
        .collect()
}

/// What a response says about its rate limits, checked for consistency: both structured
/// fields parse, carry exactly `q`/`w` and `r`/`t`, and the legacy trio repeats the `RateLimit`
/// item.
#[derive(Debug, Default)]
struct RateView {
    /// `RateLimit-Policy` as `name;q=..;w=..` strings.
    policies: Vec<String>,
    /// `RateLimit`: (name, r, t).
    current: Option<(String, i64, i64)>,
    /// `X-RateLimit-Limit`.
    limit: Option<u64>,
    /// `Retry-After` in seconds.
    retry_after: Option<u64>,
    /// `x-edgegate-quota-warning`.
    quota_warning: Option<String>,
}

fn view(resp: &GatewayResponse<FakeBody>) -> RateView {
    let num = |name: &str| {
        resp.header(name).map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not delay-seconds"))
        })
    };
    let mut out = RateView {
        retry_after: num("retry-after"),
        limit: num("x-ratelimit-limit"),
        quota_warning: resp.header("x-edgegate-quota-warning"),
        ..RateView::default()
    };
    if let Some(field) = resp.header("ratelimit-policy") {
        for (name, params) in sf_list(&field) {
            let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["q", "w"], "{field}");
            out.policies
                .push(format!("{name};q={};w={}", params[0].1, params[1].1));
        }
        assert!(!out.policies.is_empty(), "empty RateLimit-Policy sent");
    }
    if let Some(field) = resp.header("ratelimit") {
        let items = sf_list(&field);
        assert_eq!(
            items.len(),
            1,
            "RateLimit names the most restrictive only: {field}"
        );
        let (name, params) = items.into_iter().next().expect("one");
        let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["r", "t"], "{field}");
        out.current = Some((name, params[0].1, params[1].1));
    }
    let legacy = (
        out.limit,
        num("x-ratelimit-remaining"),
        num("x-ratelimit-reset"),
    );
    match &out.current {
        Some((name, r, t)) => {
            assert_eq!(
                (legacy.1, legacy.2),
                (Some(*r as u64), Some(*t as u64)),
                "X-RateLimit-* repeat the RateLimit item"
            );
            assert!(
                out.policies
                    .iter()
                    .any(|p| p.starts_with(&format!("{name};"))),
                "RateLimit names a policy of RateLimit-Policy: {out:?}"
            );
        }
        None => assert_eq!(
            legacy,
            (None, None, None),
            "X-RateLimit-* without RateLimit"
        ),
    }
    out
}

/// A 429 `rate_limited` reply: problem+json, no backend call.
fn assert_rate_limited(resp: &GatewayResponse<FakeBody>, ctx: &str) {
    assert_eq!(
        (resp.status, common::problem_code(resp).as_str()),
        (429, "rate_limited"),
        "{ctx}"
    );
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{ctx}"
    );
}

// === exact mode: one limit ===

#[test]
fn exact_sliding_window_headers_429_and_recovery() {
    let doc = config(json!([sw("burst", "ip", 5)]), json!([]), json!([]));
    let p = common::platform_with(&doc);
    let gw = common::gateway();
    // (advance ms before, status, r, t, Retry-After)
    // Five fit into the window 20 s in; the sixth must wait until the previous window's
    // weight (5 × overlap / 60 s) leaves room for one: 40 s + 12 s = 52 s. One millisecond
    // before that it is still denied; at it one passes; two windows later all five do.
    #[rustfmt::skip]
    let steps: &[(u64, u16, i64, i64, Option<u64>)] = &[
        (0, 200, 4, 100, None),
        (0, 200, 3, 100, None),
        (0, 200, 2, 100, None),
        (0, 200, 1, 100, None),
        (0, 200, 0, 100, None),
        (0, 429, 0, 100, Some(52)),
        (0, 429, 0, 100, Some(52)),
        (51_999, 429, 0, 49, Some(1)),
        (1, 200, 0, 108, None),
        (120_000, 200, 4, 108, None),
        (0, 200, 3, 108, None),
    ];
    let mut upstream_calls = 0;
    for (i, &(advance, status, r, t, retry)) in steps.iter().enumerate() {
        p.advance(advance);
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        let ctx = format!("step {i}");
        let v = view(&resp);
        assert_eq!(resp.status, status, "{ctx}: {v:?}");
        if status == 429 {
            assert_rate_limited(&resp, &ctx);
            let body: Value = match &resp.body {
                edgegate_core::pipeline::ResponseBody::Bytes(b) => {
                    serde_json::from_slice(b).expect("problem+json")
                }
                _ => panic!("{ctx}: a 429 is the gateway's own reply"),
            };
            assert_eq!(body["status"], 429, "{ctx}");
            assert_eq!(body["detail"], "rate limit burst exceeded", "{ctx}");
            assert_eq!(
                access(&p.take_logs())["error_code"],
                "rate_limited",
                "{ctx}"
            );
        } else {
            upstream_calls += 1;
            p.take_logs();
        }
        assert_eq!(
            p.sent().len(),
            upstream_calls,
            "{ctx}: a 429 never reaches the backend"
        );
        assert_eq!(v.policies, ["burst;q=5;w=60"], "{ctx}");
        assert_eq!(v.current, Some(("burst".into(), r, t)), "{ctx}");
        assert_eq!(v.limit, Some(5), "{ctx}");
        assert_eq!(v.retry_after, retry, "{ctx}");
    }
    // The literal fields, as a client sees them.
    p.advance(200_000);
    let resp = call(&gw, &p, "/a/r1", Some(IP1));
    assert_eq!(
        resp.header("ratelimit-policy").as_deref(),
        Some(r#""burst";q=5;w=60"#)
    );
    assert_eq!(
        resp.header("ratelimit").as_deref(),
        Some(r#""burst";r=4;t=88"#)
    );
}

#[test]
fn token_bucket_burst_then_refill() {
    // 1 token per second, capacity 3: RateLimit-Policy says 3 per the 3 s a refill from
    // empty takes.
    let tb = json!({"name": "tb", "key": "ip", "algorithm": "token_bucket", "limit": 1,
        "window_s": 1, "burst": 3});
    let p = common::platform_with(&config(json!([tb]), json!([]), json!([])));
    let gw = common::gateway();
    #[rustfmt::skip]
    let steps: &[(u64, u16, i64, i64, Option<u64>)] = &[
        (0, 200, 2, 1, None),
        (0, 200, 1, 2, None),
        (0, 200, 0, 3, None),
        (0, 429, 0, 3, Some(1)),
        (1_000, 200, 0, 3, None),     // one token refilled
        (500, 429, 0, 3, Some(1)),    // half a token: 0.5 s to go, rounded up
        (500, 200, 0, 3, None),
        (10_000, 200, 2, 1, None),    // refilled to the capacity, not beyond
        (0, 200, 1, 2, None),
        (0, 200, 0, 3, None),
        (0, 429, 0, 3, Some(1)),
    ];
    for (i, &(advance, status, r, t, retry)) in steps.iter().enumerate() {
        p.advance(advance);
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        let v = view(&resp);
        assert_eq!(resp.status, status, "step {i}: {v:?}");
        if status == 429 {
            assert_rate_limited(&resp, &format!("step {i}"));
        }
        assert_eq!(v.policies, ["tb;q=3;w=3"], "step {i}");
        assert_eq!(v.current, Some(("tb".into(), r, t)), "step {i}");
        assert_eq!(
            v.limit,
            Some(3),
            "step {i}: the limit of a bucket is its burst"
        );
        assert_eq!(v.retry_after, retry, "step {i}");
    }
}

#[test]
fn calendar_quota_warns_from_80_percent_and_logs_the_80_and_90_crossings() {
    // 2023-12-01T00:00:00Z, the next month's start, is 1,388,800 s after the fake clock's start.
    const TO_DECEMBER_S: u64 = 1_388_800;
    // (limit, the used % in the warning header per request from the first warned one on,
    //  the quota_warning events as (request number, used_percent))
    type Case = (u64, &'static [u64], &'static [(u64, u64)]);
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (10, &[80, 90, 100], &[(8, 80), (9, 90)]),
        (20, &[80, 85, 90, 95, 100], &[(16, 80), (18, 90)]),
        (7, &[85, 100], &[(6, 80), (7, 90)]),
        // 80 % and 90 % of 3 are both crossed by the third request: one event, the higher.
        (3, &[100], &[(3, 90)]),
    ];
    for &(limit, warned, want_events) in cases {
        let q = json!({"name": "monthly", "key": "api", "algorithm": "quota", "limit": limit,
            "period": "month"});
        let p = common::platform_with(&config(json!([q]), json!([]), json!([])));
        let gw = common::gateway();
        let first_warned = limit - warned.len() as u64 + 1;
        let mut got_events = Vec::new();
        for k in 1..=limit {
            let resp = call(&gw, &p, "/a/r1", Some(IP1));
            let ctx = format!("limit {limit}, request {k}");
            let v = view(&resp);
            assert_eq!(resp.status, 200, "{ctx}");
            assert_eq!(
                v.policies,
                [format!("monthly;q={limit};w=2592000")],
                "{ctx}"
            );
            assert_eq!(
                v.current,
                Some(("monthly".into(), (limit - k) as i64, TO_DECEMBER_S as i64)),
                "{ctx}"
            );
            let want = (k >= first_warned)
                .then(|| format!("monthly;used={}", warned[(k - first_warned) as usize]));
            assert_eq!(v.quota_warning, want, "{ctx}");
            for e in events(&p.take_logs(), "quota_warning") {
                assert_eq!(
                    (&e["limit"], &e["key"], &e["value"], &e["remaining"]),
                    (
                        &json!("monthly"),
                        &json!("api"),
                        &json!("a"),
                        &json!(limit - k)
                    ),
                    "{ctx}: {e}"
                );
                got_events.push((k, e["used_percent"].as_u64().expect("percent")));
            }
        }
        assert_eq!(got_events, want_events, "limit {limit}");

        // Spent: 429 until the next month, still warning.
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        assert_rate_limited(&resp, &format!("limit {limit}, spent"));
        let v = view(&resp);
        assert_eq!(v.retry_after, Some(TO_DECEMBER_S), "limit {limit}");
        assert_eq!(
            v.quota_warning.as_deref(),
            Some("monthly;used=100"),
            "limit {limit}"
        );
        assert!(events(&p.take_logs(), "quota_warning").is_empty());

        // The calendar month rolls over: a fresh quota, no warning.
        p.advance(TO_DECEMBER_S * 1000 - 1);
        assert_eq!(call(&gw, &p, "/a/r1", Some(IP1)).status, 429, "1 ms early");
        p.advance(1);
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        let v = view(&resp);
        assert_eq!(resp.status, 200, "limit {limit}: December");
        assert_eq!(v.current.map(|c| c.1), Some(limit as i64 - 1));
        assert_eq!(v.quota_warning, None);
    }
}

// === several limits, keys, levels ===

/// (path, client address, status, the limit `RateLimit` names ("" for none), its `r` (-1:
/// not checked), `RateLimit-Policy` as `name;q=..;w=..`).
type Step = (
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    i64,
    &'static [&'static str],
);

fn run_steps(name: &str, doc: &Value, steps: &[Step]) {
    let p = common::platform_with(doc);
    let gw = common::gateway();
    for (i, &(path, ip, status, binding, r, policies)) in steps.iter().enumerate() {
        let resp = call(&gw, &p, path, ip);
        let ctx = format!("{name}, step {i} ({path} from {ip:?})");
        let v = view(&resp);
        assert_eq!(resp.status, status, "{ctx}: {v:?}");
        if status == 429 {
            assert_rate_limited(&resp, &ctx);
            assert!(v.retry_after.is_some(), "{ctx}: Retry-After");
        } else {
            assert_eq!(v.retry_after, None, "{ctx}");
        }
        assert_eq!(v.policies, policies, "{ctx}");
        match &v.current {
            None => assert_eq!(binding, "", "{ctx}: no RateLimit field"),
            Some((n, rr, _)) => {
                assert_eq!(n, binding, "{ctx}: {v:?}");
                if r >= 0 {
                    assert_eq!(*rr, r, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn every_level_applies_and_the_most_restrictive_is_reported() {
    const ALL: &[&str] = &["per-ip;q=10;w=60", "api-cap;q=20;w=60", "r1;q=2;w=60"];
    const BROAD: &[&str] = &["per-ip;q=10;w=60", "api-cap;q=20;w=60"];
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, Vec<Step>)> = vec![
        (
            "the gateway's per-address limit binds",
            config(json!([sw("per-ip", "ip", 2)]), json!([sw("api-cap", "api", 5)]),
                json!([sw("r1", "route", 4)])),
            vec![
                // per-ip 1/2, api-cap 4/5, r1 3/4 left.
                ("/a/r1", Some(IP1), 200, "per-ip", 1, &["per-ip;q=2;w=60", "api-cap;q=5;w=60", "r1;q=4;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-ip", 0, &["per-ip;q=2;w=60", "api-cap;q=5;w=60"]),
                // Denied by the first limit: the later ones are not run.
                ("/a/r1", Some(IP1), 429, "per-ip", 0, &["per-ip;q=2;w=60"]),
                ("/a/r2", Some(IP2), 200, "api-cap", 2, &["per-ip;q=2;w=60", "api-cap;q=5;w=60"]),
            ],
        ),
        (
            "the route's limit binds",
            config(json!([sw("per-ip", "ip", 10)]), json!([sw("api-cap", "api", 20)]),
                json!([sw("r1", "route", 2)])),
            vec![
                ("/a/r1", Some(IP1), 200, "r1", 1, ALL),
                ("/a/r1", Some(IP1), 200, "r1", 0, ALL),
                ("/a/r1", Some(IP1), 429, "r1", 0, ALL),
                ("/a/r1", Some(IP2), 429, "r1", 0, ALL),
                ("/a/r2", Some(IP1), 200, "per-ip", -1, BROAD),
            ],
        ),
        (
            "the API's capacity binds across routes and clients",
            config(json!([sw("per-ip", "ip", 10)]), json!([sw("api-cap", "api", 3)]),
                json!([sw("r1", "route", 5)])),
            vec![
                ("/a/r1", Some(IP1), 200, "api-cap", 2, &["per-ip;q=10;w=60", "api-cap;q=3;w=60", "r1;q=5;w=60"]),
                ("/a/r2", Some(IP2), 200, "api-cap", 1, &["per-ip;q=10;w=60", "api-cap;q=3;w=60"]),
                ("/a/r1", Some(IP3), 200, "api-cap", 0, &["per-ip;q=10;w=60", "api-cap;q=3;w=60", "r1;q=5;w=60"]),
                ("/a/r2", Some(IP4), 429, "api-cap", 0, &["per-ip;q=10;w=60", "api-cap;q=3;w=60"]),
            ],
        ),
        (
            "a route's limit replaces the same-named gateway limit and counts apart",
            config(json!([sw("per-ip", "ip", 2)]), json!([]), json!([sw("per-ip", "ip", 3)])),
            vec![
                ("/a/r1", Some(IP1), 200, "per-ip", 2, &["per-ip;q=3;w=60"]),
                ("/a/r1", Some(IP1), 200, "per-ip", 1, &["per-ip;q=3;w=60"]),
                ("/a/r1", Some(IP1), 200, "per-ip", 0, &["per-ip;q=3;w=60"]),
                ("/a/r1", Some(IP1), 429, "per-ip", 0, &["per-ip;q=3;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-ip", 1, &["per-ip;q=2;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-ip", 0, &["per-ip;q=2;w=60"]),
                ("/a/r2", Some(IP1), 429, "per-ip", 0, &["per-ip;q=2;w=60"]),
            ],
        ),
        (
            "the API's limit replaces the gateway's, the route turns it off",
            config(
                json!([sw("per-ip", "ip", 1)]),
                json!([sw("per-ip", "ip", 2)]),
                // `off` needs nothing else to be valid.
                json!([{"name": "per-ip", "key": "ip", "algorithm": "sliding_window", "limit": 0, "mode": "off"}]),
            ),
            vec![
                ("/a/r1", Some(IP1), 200, "", 0, &[]),
                ("/a/r1", Some(IP1), 200, "", 0, &[]),
                ("/a/r1", Some(IP1), 200, "", 0, &[]),
                ("/a/r2", Some(IP1), 200, "per-ip", 1, &["per-ip;q=2;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-ip", 0, &["per-ip;q=2;w=60"]),
                ("/a/r2", Some(IP1), 429, "per-ip", 0, &["per-ip;q=2;w=60"]),
            ],
        ),
        (
            "client addresses count apart; IPv6 per /64; no address, no limit",
            config(json!([sw("per-ip", "ip", 1)]), json!([]), json!([])),
            vec![
                ("/a/r1", Some(IP1), 200, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "per-ip", 0, &["per-ip;q=1;w=60"]),
                // A gateway per-address limit counts across routes.
                ("/a/r2", Some(IP1), 429, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some(IP2), 200, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some(IP2), 429, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some("2001:db8:1:2::1"), 200, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some("2001:db8:1:2:ffff:ffff:ffff:ffff"), 429, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", Some("2001:db8:1:3::1"), 200, "per-ip", 0, &["per-ip;q=1;w=60"]),
                ("/a/r1", None, 200, "", 0, &[]),
                ("/a/r1", None, 200, "", 0, &[]),
            ],
        ),
        (
            "routes count apart under a per-route limit",
            config(json!([]), json!([sw("per-route", "route", 1)]), json!([])),
            vec![
                ("/a/r1", Some(IP1), 200, "per-route", 0, &["per-route;q=1;w=60"]),
                ("/a/r1", Some(IP2), 429, "per-route", 0, &["per-route;q=1;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-route", 0, &["per-route;q=1;w=60"]),
                ("/a/r2", Some(IP2), 429, "per-route", 0, &["per-route;q=1;w=60"]),
            ],
        ),
        (
            "no application or subscription: those limits are skipped",
            config(json!([sw("per-app", "application", 1), sw("per-sub", "subscription", 1)]),
                json!([]), json!([])),
            vec![
                ("/a/r1", Some(IP1), 200, "", 0, &[]),
                ("/a/r1", Some(IP1), 200, "", 0, &[]),
            ],
        ),
    ];
    for (name, doc, steps) in &cases {
        run_steps(name, doc, steps);
    }
}

#[test]
fn a_request_refused_by_a_later_limit_gives_back_the_earlier_units() {
    let approx = with(
        &sw("per-ip", "ip", 3),
        json!({"mode": "approximate", "lease": 3}),
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, Vec<Step>)> = vec![
        (
            "exact: refunds to the counter",
            config(json!([sw("per-ip", "ip", 10)]), json!([]), json!([sw("r1", "route", 1)])),
            vec![
                ("/a/r1", Some(IP1), 200, "r1", 0, &["per-ip;q=10;w=60", "r1;q=1;w=60"]),
                // Refused by r1: per-ip gets its unit back each time.
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=10;w=60", "r1;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=10;w=60", "r1;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=10;w=60", "r1;q=1;w=60"]),
                // Two served requests so far: 8 left (6 without the refunds).
                ("/a/r2", Some(IP1), 200, "per-ip", 8, &["per-ip;q=10;w=60"]),
            ],
        ),
        (
            "approximate: the unit goes back into the lease",
            config(json!([approx]), json!([]), json!([sw("r1", "route", 1)])),
            vec![
                ("/a/r1", Some(IP1), 200, "r1", 0, &["per-ip;q=3;w=60", "r1;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=3;w=60", "r1;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=3;w=60", "r1;q=1;w=60"]),
                ("/a/r1", Some(IP1), 429, "r1", 0, &["per-ip;q=3;w=60", "r1;q=1;w=60"]),
                // Without the give-back the lease of 3 would be gone: these would be 429.
                ("/a/r2", Some(IP1), 200, "per-ip", 1, &["per-ip;q=3;w=60"]),
                ("/a/r2", Some(IP1), 200, "per-ip", 0, &["per-ip;q=3;w=60"]),
                ("/a/r2", Some(IP1), 429, "per-ip", 0, &["per-ip;q=3;w=60"]),
            ],
        ),
    ];
    for (name, doc, steps) in &cases {
        run_steps(name, doc, steps);
    }
}

#[test]
fn ipv4_mapped_clients_count_as_their_ipv4_address() {
    run_steps(
        "IPv4-mapped addresses",
        &config(json!([sw("per-ip", "ip", 1)]), json!([]), json!([])),
        &[
            (
                "/a/r1",
                Some("::ffff:203.0.113.1"),
                200,
                "per-ip",
                0,
                &["per-ip;q=1;w=60"],
            ),
            (
                "/a/r1",
                Some("::ffff:203.0.113.2"),
                200,
                "per-ip",
                0,
                &["per-ip;q=1;w=60"],
            ),
            // The same client as its plain IPv4 address.
            (
                "/a/r1",
                Some("203.0.113.1"),
                429,
                "per-ip",
                0,
                &["per-ip;q=1;w=60"],
            ),
        ],
    );
}

// === subscriptions and plans (Registry snapshot) ===

fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applications `app-gold` (plan `gold`, rate plan `rp-gold`), `app-free` (`rp-free`),
/// `app-prio` (a priority subscription on `free`), each with a key `k-<tier>` and a
/// subscription to `orders` v1 in production.
fn snapshot_doc() -> Value {
    let cred = |key: &str, app: &str| {
        json!({"kind": "api_key", "key": key_hash(key), "consumer_id": "c1",
            "application_id": app, "status": "active", "scopes": []})
    };
    let sub = |id: &str, app: &str, plan: &str, priority: bool| {
        json!({"id": id, "application_id": app, "api": "orders", "versions": ["v1"],
            "environment": "production", "plan_id": plan, "status": "active",
            "flags": {"priority": priority}})
    };
    json!({
        "version": "snap-1",
        "consumers": [{"id": "c1", "name": "Acme", "status": "active"}],
        "applications": [
            {"id": "app-gold", "consumer_id": "c1", "name": "gold"},
            {"id": "app-free", "consumer_id": "c1", "name": "free"},
            {"id": "app-prio", "consumer_id": "c1", "name": "prio"}
        ],
        "credentials": [
            cred("k-gold", "app-gold"), cred("k-free", "app-free"), cred("k-prio", "app-prio")
        ],
        "plans": [
            {"id": "gold", "tier": "gold", "rate_plan": "rp-gold"},
            {"id": "free", "tier": "free", "rate_plan": "rp-free"}
        ],
        "subscriptions": [
            sub("s-gold", "app-gold", "gold", false),
            sub("s-free", "app-free", "free", false),
            sub("s-prio", "app-prio", "free", true)
        ]
    })
}

/// Encodes, shards and stores a snapshot (as shared/tests/authz.rs does).
fn put_snapshot(p: &FakePlatform, doc: &Value) {
    let doc = from_json(&doc.to_string()).expect("valid snapshot");
    let bytes = encode(&doc);
    let (manifest, parts) = shard(&bytes, 300);
    for (i, part) in parts.iter().enumerate() {
        p.kv_put_bytes(&manifest.shard_key(SHARD_PREFIX, i as u32), part);
    }
    p.kv_put(
        MANIFEST_KEY,
        &serde_json::to_string(&manifest).expect("json"),
    );
}

#[test]
fn per_subscription_and_per_plan_limits_priority_bypasses() {
    let auth = json!({"accept": ["api_key"], "api_key": {"header": "x-api-key"}});
    let plan = json!({"name": "plan", "key": "subscription", "algorithm": "sliding_window",
        "limit": 2, "window_s": 60, "plans": {"rp-gold": 4}});
    let doc = json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "gateway": { "policies": { "auth": auth, "rate_limits": [plan] } },
        "apis": [
            { "name": "orders", "base_path": "/orders",
              "versions": [{"name": "v1", "pool": "p"}],
              "environments": [{"name": "production", "hosts": ["api.example.com"]}],
              "policies": { "authorization": { "subscription": {} },
                            "rate_limits": [sw("per-ip", "ip", 100)] },
              "routes": [{ "name": "items", "path": "/items" }] },
            // No subscription rule: the subscription limit is skipped, the application one
            // counts per client application.
            { "name": "open", "base_path": "/open", "pool": "p",
              "policies": { "rate_limits": [sw("per-app", "application", 3)] },
              "routes": [{ "name": "r", "path": "/r" }] }
        ]
    });
    let p = common::platform_with(&doc);
    put_snapshot(&p, &snapshot_doc());
    let gw = common::gateway();
    const GOLD: &[&str] = &["plan;q=4;w=60", "per-ip;q=100;w=60"];
    const FREE: &[&str] = &["plan;q=2;w=60", "per-ip;q=100;w=60"];
    const APP: &[&str] = &["per-app;q=3;w=60"];
    // (path, key, status, binding limit, r, policies)
    type SubStep = (
        &'static str,
        &'static str,
        u16,
        &'static str,
        i64,
        &'static [&'static str],
    );
    #[rustfmt::skip]
    let steps: &[SubStep] = &[
        ("/orders/v1/items", "k-gold", 200, "plan", 3, GOLD),
        ("/orders/v1/items", "k-gold", 200, "plan", 2, GOLD),
        ("/orders/v1/items", "k-gold", 200, "plan", 1, GOLD),
        ("/orders/v1/items", "k-gold", 200, "plan", 0, GOLD),
        ("/orders/v1/items", "k-gold", 429, "plan", 0, &["plan;q=4;w=60"]),
        ("/orders/v1/items", "k-free", 200, "plan", 1, FREE),
        ("/orders/v1/items", "k-free", 200, "plan", 0, FREE),
        ("/orders/v1/items", "k-free", 429, "plan", 0, &["plan;q=2;w=60"]),
        // Priority: no limit applies, not even the per-address one; no headers.
        ("/orders/v1/items", "k-prio", 200, "", 0, &[]),
        ("/orders/v1/items", "k-prio", 200, "", 0, &[]),
        ("/orders/v1/items", "k-prio", 200, "", 0, &[]),
        ("/orders/v1/items", "k-prio", 200, "", 0, &[]),
        ("/orders/v1/items", "k-prio", 200, "", 0, &[]),
        ("/open/r", "k-free", 200, "per-app", 2, APP),
        ("/open/r", "k-free", 200, "per-app", 1, APP),
        ("/open/r", "k-free", 200, "per-app", 0, APP),
        ("/open/r", "k-free", 429, "per-app", 0, APP),
        ("/open/r", "k-gold", 200, "per-app", 2, APP),
        ("/open/r", "k-prio", 200, "per-app", 2, APP),
    ];
    for (i, &(path, key, status, binding, r, policies)) in steps.iter().enumerate() {
        let resp = call_with_key(&gw, &p, path, Some(IP1), Some(key));
        let ctx = format!("step {i}: {key} on {path}");
        let v = view(&resp);
        assert_eq!(resp.status, status, "{ctx}: {v:?}");
        if status == 429 {
            assert_rate_limited(&resp, &ctx);
        }
        assert_eq!(v.policies, policies, "{ctx}");
        match &v.current {
            None => assert_eq!(binding, "", "{ctx}"),
            Some((n, rr, _)) => assert_eq!((n.as_str(), *rr), (binding, r), "{ctx}"),
        }
    }
}

// === shadow mode ===

#[test]
fn shadow_never_blocks_but_logs() {
    let shadow = with(&sw("per-ip", "ip", 2), json!({"mode": "shadow"}));
    let doc = config(json!([shadow]), json!([]), json!([sw("r1", "route", 10)]));
    let p = common::platform_with(&doc);
    let gw = common::gateway();
    for k in 1..=5u64 {
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        let v = view(&resp);
        assert_eq!(resp.status, 200, "request {k}");
        // Only enforced limits are advertised.
        assert_eq!(v.policies, ["r1;q=10;w=60"], "request {k}");
        assert_eq!(v.current, Some(("r1".into(), 10 - k as i64, 100)));
        let logs = p.take_logs();
        let shadow = events(&logs, "rate_limit_shadow");
        if k <= 2 {
            assert!(shadow.is_empty(), "request {k}: {shadow:?}");
        } else {
            assert_eq!(shadow.len(), 1, "request {k}: {logs:?}");
            let e = &shadow[0];
            assert_eq!(
                (&e["limit"], &e["key"], &e["value"]),
                (&json!("per-ip"), &json!("ip"), &json!(IP1)),
                "{e}"
            );
            assert_eq!(e["request_id"], access(&logs)["request_id"], "{e}");
        }
    }
    // A route with only a shadow limit: no rate-limit fields at all.
    let resp = call(&gw, &p, "/a/r2", Some(IP1));
    assert_eq!(resp.status, 200);
    assert!(resp.header("ratelimit-policy").is_none() && resp.header("ratelimit").is_none());
    assert_eq!(events(&p.take_logs(), "rate_limit_shadow").len(), 1);
}

// === counter outages ===

#[test]
fn counter_outage_fails_open_or_closed_and_is_logged_with_a_count() {
    let open = with(&sw("lim-open", "ip", 5), json!({"on_error": "open"}));
    let default = sw("lim-default", "ip", 5);
    let closed = with(&sw("lim-closed", "ip", 5), json!({"on_error": "closed"}));
    // (case, limits, status, code, the rate_limit_unavailable events per request as
    //  (limit, on_error))
    type Case = (
        &'static str,
        Value,
        u16,
        &'static str,
        Vec<(&'static str, &'static str)>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("open", json!([open]), 200, "", vec![("lim-open", "open")]),
        ("open by default", json!([default]), 200, "", vec![("lim-default", "open")]),
        ("closed", json!([closed]), 503, "rate_limit_unavailable", vec![("lim-closed", "closed")]),
        ("open, then closed", json!([open, closed]), 503, "rate_limit_unavailable",
            vec![("lim-open", "open"), ("lim-closed", "closed")]),
        ("closed first stops at once", json!([closed, open]), 503, "rate_limit_unavailable",
            vec![("lim-closed", "closed")]),
    ];
    for (name, limits, status, code, want) in &cases {
        let p = common::platform_with(&config(limits.clone(), json!([]), json!([])));
        let gw = common::gateway();
        p.set_counters_down(true);
        let mut failures = 0;
        for k in 1..=3 {
            let resp = call(&gw, &p, "/a/r1", Some(IP1));
            let ctx = format!("{name}, request {k}");
            assert_eq!(
                (resp.status, common::problem_code(&resp).as_str()),
                (*status, *code),
                "{ctx}"
            );
            assert!(
                resp.header("ratelimit").is_none() && resp.header("ratelimit-policy").is_none(),
                "{ctx}: nothing to advertise"
            );
            let logs = p.take_logs();
            let got = events(&logs, "rate_limit_unavailable");
            assert_eq!(got.len(), want.len(), "{ctx}: {logs:?}");
            for (e, (limit, mode)) in got.iter().zip(want) {
                failures += 1;
                assert_eq!(
                    (&e["limit"], &e["on_error"], &e["failures"], &e["key"]),
                    (&json!(limit), &json!(mode), &json!(failures), &json!("ip")),
                    "{ctx}: {e}"
                );
                assert_eq!(e["error"], "counter unreachable", "{ctx}");
                assert_eq!(e["request_id"], access(&logs)["request_id"], "{ctx}");
            }
        }
        assert_eq!(gw.limiter().failures(), failures, "{name}");
        // Back up: nothing was counted during the outage.
        p.set_counters_down(false);
        let resp = call(&gw, &p, "/a/r1", Some(IP1));
        assert_eq!(resp.status, 200, "{name}");
        assert_eq!(view(&resp).current.map(|c| c.1), Some(4), "{name}");
    }
}

// === approximate mode ===

#[test]
fn approximate_mode_leases_blocks_and_makes_few_counter_calls() {
    // 100 requests under the limit: exact mode calls the counter for each, approximate mode
    // once per block of `lease` units.
    for (mode, lease, want_calls) in [("exact", None, 100), ("approximate", Some(10), 10)] {
        let mut limit = with(&sw("cap", "api", 1000), json!({"mode": mode}));
        if let Some(l) = lease {
            limit["lease"] = json!(l);
        }
        let p = common::platform_with(&config(json!([limit]), json!([]), json!([])));
        let gw = common::gateway();
        for k in 1..=100 {
            let resp = call(&gw, &p, "/a/r1", Some(IP1));
            assert_eq!(resp.status, 200, "{mode} {k}");
            // Both report what is left as exact mode would.
            assert_eq!(
                view(&resp).current.map(|c| c.1),
                Some(1000 - k),
                "{mode} {k}"
            );
        }
        assert_eq!(p.counter_calls(), want_calls, "{mode}");
    }
}

#[test]
fn approximate_leases_expire_after_lease_ms_and_are_refunded() {
    let limit = with(
        &sw("cap", "api", 100),
        json!({"mode": "approximate", "lease": 10}),
    );
    let p = common::platform_with(&config(json!([limit]), json!([]), json!([])));
    // Two isolates on the same counter.
    let (a, b) = (common::gateway(), common::gateway());
    let r = |gw: &Gateway| {
        let resp = call(gw, &p, "/a/r1", Some(IP1));
        assert_eq!(resp.status, 200);
        view(&resp).current.expect("RateLimit").1
    };
    // A leases 10 (counter: 10 used) and spends 1: 99 left as far as it knows.
    assert_eq!(r(&a), 99);
    assert_eq!(p.counter_calls(), 1);
    // B leases 10 more (20 used) and spends 1.
    assert_eq!(r(&b), 89);
    assert_eq!(p.counter_calls(), 2);
    // Within LEASE_MS, A spends from its lease without a call.
    p.advance(LEASE_MS - 1);
    assert_eq!(r(&a), 98);
    assert_eq!(p.counter_calls(), 2);
    // At LEASE_MS the lease has expired: A refunds its 8 unspent units (12 used) and leases
    // a new block (22 used): 78 at the counter + 9 in hand. Without the refund it would be
    // 70 + 9.
    p.advance(1);
    assert_eq!(r(&a), 87);
    assert_eq!(p.counter_calls(), 4, "a refund and a lease");
    // B's lease expired too: it gives back 9 (13 used) and leases 10 (23 used).
    assert_eq!(r(&b), 86);
    assert_eq!(p.counter_calls(), 6);
}

/// Sends `requests` requests round-robin from `isolates` gateways to one counter key,
/// `step_ms` apart; returns the times (ms after the start) of the admitted ones.
fn simulate(limit: &Value, isolates: usize, requests: usize, step_ms: u64) -> (Vec<u64>, u32) {
    let p = common::platform_with(&config(json!([limit]), json!([]), json!([])));
    let gws: Vec<Gateway> = (0..isolates).map(|_| common::gateway()).collect();
    let mut admitted = Vec::new();
    for k in 0..requests {
        let resp = call(&gws[k % isolates], &p, "/a/r1", Some(IP1));
        match resp.status {
            200 => admitted.push(p.now_ms() - T0),
            429 => {}
            s => panic!("request {k}: {s}"),
        }
        p.advance(step_ms);
        p.take_logs();
    }
    (admitted, p.counter_calls())
}

#[test]
fn approximate_mode_stays_within_the_documented_error_bound() {
    // The bound (shared/src/ratelimit/mod.rs), with N isolates holding blocks of B units and
    // leases living L = LEASE_MS:
    // - windows and quotas: a window or period sees at most N × B units over its limit, and
    //   up to N × B that exact mode would admit can be denied;
    // - token bucket: at most burst + rate × (t1 − t0 + L) / period in any [t0, t1].
    const N: usize = 3;
    const B: u64 = 10;
    let approx = json!({"mode": "approximate", "lease": B});
    let l = LEASE_MS;

    // Sliding window, 100 per 1 s, demand 500/s for 6 s: per fixed 1 s window (the fake
    // clock starts on a whole second) at most 100 + N × B, and the first window, which
    // starts empty, admits at least 100 − N × B.
    let sliding = with(
        &json!({"name": "cap", "key": "api", "algorithm": "sliding_window", "limit": 100, "window_s": 1}),
        approx.clone(),
    );
    let (admitted, calls) = simulate(&sliding, N, 3000, 2);
    let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
    for t in &admitted {
        *per_window.entry(t / 1000).or_default() += 1;
    }
    assert_eq!(per_window.len(), 6, "{per_window:?}");
    for (w, n) in &per_window {
        assert!(*n <= 100 + N as u64 * B, "window {w}: {n} admitted");
    }
    assert!(per_window[&0] >= 100 - N as u64 * B, "{per_window:?}");
    assert!(calls > 0);

    // Token bucket, 50/s with a burst of 100, same demand.
    let bucket = with(
        &json!({"name": "cap", "key": "api", "algorithm": "token_bucket", "limit": 50, "window_s": 1, "burst": 100}),
        approx.clone(),
    );
    let (admitted, _) = simulate(&bucket, N, 3000, 2);
    assert!(admitted.len() > 100, "{}", admitted.len());
    for i in 0..admitted.len() {
        for j in i..admitted.len() {
            let spent = (j - i + 1) as u64;
            let span = admitted[j] - admitted[i];
            assert!(
                spent * 1000 <= 100 * 1000 + 50 * (span + l),
                "{spent} admitted in [{}, {}] ms",
                admitted[i],
                admitted[j]
            );
        }
    }

    // Calendar quota of 200: never over; at most N × B short while demand lasts.
    let quota = with(
        &json!({"name": "cap", "key": "api", "algorithm": "quota", "limit": 200, "period": "month"}),
        approx.clone(),
    );
    let (admitted, _) = simulate(&quota, N, 1000, 2);
    let n = admitted.len() as u64;
    assert!((200 - N as u64 * B..=200).contains(&n), "{n} admitted");

    // Under the limit every request passes, with about one counter call per block.
    let roomy = with(
        &json!({"name": "cap", "key": "api", "algorithm": "sliding_window", "limit": 1000, "window_s": 1}),
        approx,
    );
    let (admitted, calls) = simulate(&roomy, N, 2000, 2);
    assert_eq!(admitted.len(), 2000);
    assert!(
        u64::from(calls) * 5 <= 2000,
        "{calls} counter calls for 2000 requests"
    );
}

// === shards ===

/// How many of `requests` simultaneous requests one key admits.
fn admitted_at_once(limit: &Value, requests: usize) -> usize {
    let p = common::platform_with(&config(json!([limit]), json!([]), json!([])));
    let gw = common::gateway();
    (0..requests)
        .filter(|_| call(&gw, &p, "/a/r1", Some(IP1)).status == 200)
        .count()
}

#[test]
fn shards_never_admit_more_than_the_total_limit() {
    let sw10 = sw("hot", "api", 10);
    let tb = json!({"name": "hot", "key": "api", "algorithm": "token_bucket", "limit": 8,
        "window_s": 1, "burst": 12});
    let quota = json!({"name": "hot", "key": "api", "algorithm": "quota", "limit": 10,
        "period": "month"});
    // (case, limit, total)
    let cases = [
        ("sliding window / 4", with(&sw10, json!({"shards": 4})), 10),
        ("sliding window / 3", with(&sw10, json!({"shards": 3})), 10),
        (
            "sliding window / 10",
            with(&sw10, json!({"shards": 10})),
            10,
        ),
        (
            "sliding window 100 / 64",
            with(&sw("hot", "api", 100), json!({"shards": 64})),
            100,
        ),
        ("token bucket / 4", with(&tb, json!({"shards": 4})), 12),
        ("quota / 3", with(&quota, json!({"shards": 3})), 10),
        ("sliding window / 1", with(&sw10, json!({"shards": 1})), 10),
    ];
    for (name, limit, total) in &cases {
        let n = admitted_at_once(limit, 500);
        assert!(n <= *total, "{name}: {n} admitted, limit {total}");
        assert!(n * 2 >= *total, "{name}: only {n} of {total} admitted");
    }
    // The token bucket's refill is split too: over 10 s at most burst + 8/s × 10 s.
    let p = common::platform_with(&config(
        json!([with(&tb, json!({"shards": 4}))]),
        json!([]),
        json!([]),
    ));
    let gw = common::gateway();
    let mut n = 0;
    for _ in 0..1000 {
        n += usize::from(call(&gw, &p, "/a/r1", Some(IP1)).status == 200);
        p.advance(10);
    }
    assert!(n <= 12 + 80, "{n} admitted in 10 s");
}

#[test]
fn shards_above_the_limit_still_never_admit_more_than_the_limit() {
    // Each shard enforces limit / shards, at least 1: more shards than the limit (or, for a
    // token bucket, than its rate or burst) would admit more than the limit, so such a config
    // is refused (limit 5 over 8 shards would admit 8; 1/s over 4 shards would refill 4/s).
    let tb = json!({"name": "hot", "key": "api", "algorithm": "token_bucket", "limit": 1,
        "window_s": 1, "burst": 4, "shards": 4});
    for limit in [with(&sw("hot", "api", 5), json!({"shards": 8})), tb] {
        let (paths, errors) = common::config_errors(&config(json!([limit]), json!([]), json!([])));
        assert!(
            paths
                .iter()
                .any(|p| p == "$.gateway.policies.rate_limits[0].shards"),
            "{errors:?}"
        );
    }
}

// === queueing ===

/// The fake platform with a timer that moves the manual clock: `FakePlatform::sleep_ms`
/// only yields (its clock does not move), so a queued request would be retried at the same
/// instant. Everything else is the wrapped platform's.
struct TimerPlatform<'a> {
    inner: &'a FakePlatform,
    slept_ms: Cell<u64>,
}

impl Clock for TimerPlatform<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    async fn sleep_ms(&self, ms: u64) {
        self.slept_ms.set(self.slept_ms.get() + ms);
        self.inner.advance(ms);
    }
}

impl Random for TimerPlatform<'_> {
    fn fill(&self, buf: &mut [u8]) {
        self.inner.fill(buf);
    }
}

impl Log for TimerPlatform<'_> {
    fn log_line(&self, line: &str) {
        self.inner.log_line(line);
    }
}

impl Kv for TimerPlatform<'_> {
    async fn get_text(&self, key: &str) -> Result<Option<String>, PlatformError> {
        self.inner.get_text(key).await
    }
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        self.inner.get_bytes(key).await
    }
    async fn put_text(&self, key: &str, value: &str) -> Result<(), PlatformError> {
        self.inner.put_text(key, value).await
    }
    async fn put_bytes(&self, key: &str, value: &[u8]) -> Result<(), PlatformError> {
        self.inner.put_bytes(key, value).await
    }
    async fn delete(&self, key: &str) -> Result<(), PlatformError> {
        self.inner.delete(key).await
    }
}

impl Upstream for TimerPlatform<'_> {
    type Body = FakeBody;
    type Headers = HeaderList;
    async fn send(
        &self,
        inbound: &HeaderList,
        req: &UpstreamRequest,
        body: FakeBody,
    ) -> Result<UpstreamResponse<FakeBody>, UpstreamError> {
        self.inner.send(inbound, req, body).await
    }
    fn try_clone_body(&self, body: &FakeBody) -> Option<FakeBody> {
        self.inner.try_clone_body(body)
    }
    async fn buffer_body(&self, body: FakeBody, limit: u64) -> Result<FakeBody, PlatformError> {
        self.inner.buffer_body(body, limit).await
    }
    fn empty_body(&self) -> FakeBody {
        self.inner.empty_body()
    }
}

impl Crypto for TimerPlatform<'_> {
    async fn verify_signature(
        &self,
        alg: JwsAlgorithm,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError> {
        self.inner
            .verify_signature(alg, key, signing_input, signature)
            .await
    }
    async fn sign_ed25519(
        &self,
        key_id: &str,
        seed: &[u8; 32],
        message: &[u8],
    ) -> Result<Vec<u8>, PlatformError> {
        self.inner.sign_ed25519(key_id, seed, message).await
    }
}

impl Http for TimerPlatform<'_> {
    async fn fetch_buffered(
        &self,
        req: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, PlatformError> {
        self.inner.fetch_buffered(req, max_body).await
    }
}

impl Secrets for TimerPlatform<'_> {
    fn secret(&self, name: &str) -> Option<String> {
        self.inner.secret(name)
    }
}

impl SharedCache for TimerPlatform<'_> {
    async fn shared_get(&self, key: &str) -> Result<Option<Vec<u8>>, PlatformError> {
        self.inner.shared_get(key).await
    }
    async fn shared_put(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), PlatformError> {
        self.inner.shared_put(key, value, ttl_s).await
    }
}

impl Instances for TimerPlatform<'_> {
    fn reuses_instances(&self) -> bool {
        self.inner.reuses_instances()
    }
}

impl ClientCertificates for TimerPlatform<'_> {
    fn supports_client_certificates(&self) -> bool {
        self.inner.supports_client_certificates()
    }
    fn client_certificate(&self) -> Option<ClientCertificate> {
        self.inner.client_certificate()
    }
}

impl ClientGeo for TimerPlatform<'_> {
    fn client_country(&self) -> Option<String> {
        self.inner.client_country()
    }
}

impl Counters for TimerPlatform<'_> {
    async fn counter(&self, call: &CounterCall) -> Result<CounterReply, PlatformError> {
        self.inner.counter(call).await
    }
}

impl edgegate_core::platform::Control for TimerPlatform<'_> {
    async fn control(
        &self,
        call: &edgegate_core::control::ControlCall,
    ) -> Result<edgegate_core::control::ControlReply, PlatformError> {
        self.inner.control(call).await
    }
}

#[test]
fn queue_ms_waits_for_capacity_when_retry_after_fits() {
    let tb = json!({"name": "q", "key": "ip", "algorithm": "token_bucket", "limit": 1,
        "window_s": 1, "burst": 1});
    let sw1 = json!({"name": "q", "key": "ip", "algorithm": "sliding_window", "limit": 1,
        "window_s": 1});
    // (case, limit, the second request's status, how long it waited; Retry-After if denied)
    // Token bucket: the second token comes 1000 ms later. Sliding window (the clock starts
    // on a whole second): the first request fills window 0, so the next fits at the start of
    // window 2, 2000 ms later.
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, u16, u64, Option<&str>)> = vec![
        ("bucket, queue 1500", with(&tb, json!({"queue_ms": 1500})), 200, 1000, None),
        ("bucket, queue 1000", with(&tb, json!({"queue_ms": 1000})), 200, 1000, None),
        ("bucket, queue 999", with(&tb, json!({"queue_ms": 999})), 429, 0, Some("1")),
        ("bucket, no queue", tb.clone(), 429, 0, Some("1")),
        ("window, queue 2000", with(&sw1, json!({"queue_ms": 2000})), 200, 2000, None),
        ("window, queue 1999", with(&sw1, json!({"queue_ms": 1999})), 429, 0, Some("2")),
    ];
    for (name, limit, status, waited, retry) in &cases {
        let fake = common::platform_with(&config(json!([limit]), json!([]), json!([])));
        let p = TimerPlatform {
            inner: &fake,
            slept_ms: Cell::new(0),
        };
        let gw = common::gateway();
        let first = block_on(gw.handle(&p, head("/a/r1", Some(IP1), &[]), FakeBody::Empty));
        assert_eq!(first.status, 200, "{name}");
        let start = fake.now_ms();
        let resp = block_on(gw.handle(&p, head("/a/r1", Some(IP1), &[]), FakeBody::Empty));
        assert_eq!(resp.status, *status, "{name}");
        assert_eq!(p.slept_ms.get(), *waited, "{name}");
        assert_eq!(fake.now_ms() - start, *waited, "{name}");
        assert_eq!(resp.header("retry-after").as_deref(), *retry, "{name}");
        if *status == 200 {
            assert_eq!(
                fake.sent().len(),
                2,
                "{name}: the queued request reached the backend"
            );
        }
    }

    // On the plain fake platform, whose clock does not move while sleeping, a queued request
    // is retried once and then denied: the wait is bounded, never a loop.
    let fake = common::platform_with(&config(
        json!([with(&tb, json!({"queue_ms": 1500}))]),
        json!([]),
        json!([]),
    ));
    let gw = common::gateway();
    assert_eq!(call(&gw, &fake, "/a/r1", Some(IP1)).status, 200);
    let before = fake.counter_calls();
    assert_eq!(call(&gw, &fake, "/a/r1", Some(IP1)).status, 429);
    assert_eq!(fake.counter_calls() - before, 2, "one check, one retry");
}

#[test]
fn a_shadow_limit_never_delays_a_request() {
    let shadow = json!({"name": "q", "key": "ip", "algorithm": "token_bucket", "limit": 1,
        "window_s": 1, "burst": 1, "mode": "shadow", "queue_ms": 2000});
    let fake = common::platform_with(&config(json!([shadow]), json!([]), json!([])));
    let p = TimerPlatform {
        inner: &fake,
        slept_ms: Cell::new(0),
    };
    let gw = common::gateway();
    for k in 1..=3 {
        let resp = block_on(gw.handle(&p, head("/a/r1", Some(IP1), &[]), FakeBody::Empty));
        assert_eq!(resp.status, 200, "request {k}");
    }
    assert_eq!(p.slept_ms.get(), 0, "a shadow limit delayed requests");
    assert_eq!(
        events(&fake.take_logs(), "rate_limit_shadow").len(),
        2,
        "requests 2 and 3 are over the shadow limit"
    );
}

#[test]
fn queueing_over_several_limits_stays_within_max_queue_ms() {
    // config::ratelimit::MAX_QUEUE_MS (the module is private).
    const MAX_QUEUE_MS: u64 = 5_000;
    // Both limits are spent by the first request; the second needs 5 s for the first limit
    // and 10 s for the second: 5 s + 5 s of queueing, both within their queue_ms.
    let tb = |name: &str, window_s: u64| {
        json!({"name": name, "key": "ip", "algorithm": "token_bucket", "limit": 1,
            "window_s": window_s, "burst": 1, "queue_ms": 5000})
    };
    let fake = common::platform_with(&config(
        json!([tb("a", 5)]),
        json!([tb("b", 10)]),
        json!([]),
    ));
    let p = TimerPlatform {
        inner: &fake,
        slept_ms: Cell::new(0),
    };
    let gw = common::gateway();
    let first = block_on(gw.handle(&p, head("/a/r1", Some(IP1), &[]), FakeBody::Empty));
    assert_eq!(first.status, 200);
    let resp = block_on(gw.handle(&p, head("/a/r1", Some(IP1), &[]), FakeBody::Empty));
    assert!(
        p.slept_ms.get() <= MAX_QUEUE_MS,
        "waited {} ms (status {})",
        p.slept_ms.get(),
        resp.status
    );
}

// === failed authentications ===

fn auth_config(failure_limit: Value) -> Value {
    json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "gateway": { "auth_failure_limit": failure_limit },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "policies": { "auth": { "accept": ["api_key"] } },
            "routes": [{ "name": "r", "path": "/{*rest}" }]
        }]
    })
}

fn auth_platform(doc: &Value) -> FakePlatform {
    let p = common::platform_with(doc);
    p.kv_put(
        &credential_key("k-good"),
        &json!({"consumer_id": "acme", "status": "active"}).to_string(),
    );
    p
}

#[test]
fn failed_authentications_per_address_are_limited() {
    let p = auth_platform(&auth_config(
        json!({"limit": 3, "window_s": 60, "on_error": "open"}),
    ));
    let gw = common::gateway();
    const V6A: &str = "2001:db8::1";
    const V6B: &str = "2001:db8::ffff:1";
    const V6C: &str = "2001:db8:0:1::1";
    // (advance ms, client, key, status, code, Retry-After)
    // Three failures 20 s into a window: blocked until the window's weight lets one more
    // in (Retry-After is the full reset: 40 s + 60 s). One window later, the previous
    // window's 3 failures weigh 2: one more attempt; two windows later all is forgotten.
    type AuthStep = (
        u64,
        Option<&'static str>,
        Option<&'static str>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    #[rustfmt::skip]
    let steps: &[AuthStep] = &[
        (0, Some(IP1), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(IP1), Some("k-bad2"), 401, "unknown_api_key", None),
        (0, Some(IP1), None, 401, "missing_credentials", None),
        (0, Some(IP1), Some("k-good"), 429, "too_many_auth_failures", Some("60")),
        (0, Some(IP1), Some("k-bad"), 429, "too_many_auth_failures", Some("60")),
        // Other addresses are unaffected.
        (0, Some(IP2), Some("k-good"), 200, "", None),
        (0, Some(IP2), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(IP2), Some("k-good"), 200, "", None),
        // No address: nothing to count by.
        (0, None, Some("k-bad"), 401, "unknown_api_key", None),
        (0, None, Some("k-bad"), 401, "unknown_api_key", None),
        (0, None, Some("k-bad"), 401, "unknown_api_key", None),
        (0, None, Some("k-good"), 200, "", None),
        // One /64 is one address.
        (0, Some(V6A), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(V6B), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(V6A), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(V6B), Some("k-good"), 429, "too_many_auth_failures", Some("60")),
        (0, Some(V6C), Some("k-good"), 200, "", None),
        // The window passes.
        (60_000, Some(IP1), Some("k-good"), 200, "", None),
        (0, Some(IP1), Some("k-bad"), 401, "unknown_api_key", None),
        (0, Some(IP1), Some("k-good"), 429, "too_many_auth_failures", Some("20")),
        (120_000, Some(IP1), Some("k-good"), 200, "", None),
        (0, Some(V6B), Some("k-good"), 200, "", None),
    ];
    for (i, &(advance, ip, key, status, code, retry)) in steps.iter().enumerate() {
        p.advance(advance);
        let resp = call_with_key(&gw, &p, "/a/x", ip, key);
        let ctx = format!("step {i}: {key:?} from {ip:?}");
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (status, code),
            "{ctx}"
        );
        assert_eq!(resp.header("retry-after").as_deref(), retry, "{ctx}");
    }
}

#[test]
fn failed_authentication_counter_outage_follows_on_error() {
    // (on_error, status with a valid key while counters are down, code)
    let cases = [
        ("open", 200, "", 401, "unknown_api_key"),
        (
            "closed",
            503,
            "rate_limit_unavailable",
            503,
            "rate_limit_unavailable",
        ),
    ];
    for (mode, good_status, good_code, bad_status, bad_code) in cases {
        let p = auth_platform(&auth_config(
            json!({"limit": 1, "window_s": 60, "on_error": mode}),
        ));
        let gw = common::gateway();
        p.set_counters_down(true);
        let resp = call_with_key(&gw, &p, "/a/x", Some(IP1), Some("k-good"));
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (good_status, good_code),
            "{mode}"
        );
        let resp = call_with_key(&gw, &p, "/a/x", Some(IP1), Some("k-bad"));
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (bad_status, bad_code),
            "{mode}"
        );
        let logs = p.take_logs();
        let got = events(&logs, "rate_limit_unavailable");
        // The attempt is counted before authentication (one counter call, which fails):
        // open lets each request on, closed stops it.
        assert_eq!(got.len(), 2, "{mode}: {logs:?}");
        for (k, e) in got.iter().enumerate() {
            assert_eq!(e["limit"], "auth_failures", "{mode}: {e}");
            assert_eq!(e["failures"], json!(k + 1), "{mode}: {e}");
        }
        assert_eq!(gw.limiter().failures(), got.len() as u64, "{mode}");
    }
}

// === config errors ===

#[test]
fn rate_limit_config_errors_have_paths() {
    let base = sw("x", "ip", 5);
    const G: &str = "$.gateway.policies.rate_limits[0]";
    // (case, level: 0 gateway / 1 API / 2 route, the level's list, expected error paths)
    #[rustfmt::skip]
    let cases: Vec<(&str, usize, Value, Vec<String>)> = vec![
        ("sliding window without window_s", 0, json!([with(&base, json!({"window_s": null}))]),
            vec![format!("{G}.window_s")]),
        ("token bucket without window_s", 0,
            json!([with(&base, json!({"algorithm": "token_bucket", "window_s": null}))]),
            vec![format!("{G}.window_s")]),
        ("window_s 0", 0, json!([with(&base, json!({"window_s": 0}))]),
            vec![format!("{G}.window_s")]),
        ("quota with window_s", 0,
            json!([with(&base, json!({"algorithm": "quota", "period": "month"}))]),
            vec![format!("{G}.window_s")]),
        ("quota without period", 0,
            json!([with(&base, json!({"algorithm": "quota", "window_s": null}))]),
            vec![format!("{G}.period")]),
        ("period on a sliding window", 0, json!([with(&base, json!({"period": "year"}))]),
            vec![format!("{G}.period")]),
        ("burst on a sliding window", 0, json!([with(&base, json!({"burst": 10}))]),
            vec![format!("{G}.burst")]),
        ("burst on a quota", 0,
            json!([with(&base, json!({"algorithm": "quota", "period": "month", "window_s": null, "burst": 10}))]),
            vec![format!("{G}.burst")]),
        ("plans without key subscription", 0,
            json!([with(&base, json!({"plans": {"rp-gold": 100}}))]),
            vec![format!("{G}.plans")]),
        ("a plan's limit 0", 0,
            json!([with(&base, json!({"key": "subscription", "plans": {"rp-gold": 0}}))]),
            vec![format!("{G}.plans.rp-gold")]),
        ("shards 0", 0, json!([with(&base, json!({"shards": 0}))]), vec![format!("{G}.shards")]),
        ("shards 65", 0, json!([with(&base, json!({"shards": 65}))]), vec![format!("{G}.shards")]),
        ("lease in exact mode", 0, json!([with(&base, json!({"lease": 10}))]),
            vec![format!("{G}.lease")]),
        ("lease in shadow mode", 0, json!([with(&base, json!({"mode": "shadow", "lease": 10}))]),
            vec![format!("{G}.lease")]),
        ("lease 0", 0, json!([with(&base, json!({"mode": "approximate", "lease": 0}))]),
            vec![format!("{G}.lease")]),
        ("queue_ms over 5000", 0, json!([with(&base, json!({"queue_ms": 5001}))]),
            vec![format!("{G}.queue_ms")]),
        ("limit 0", 0, json!([with(&base, json!({"limit": 0}))]), vec![format!("{G}.limit")]),
        ("name with a space", 0, json!([with(&base, json!({"name": "a b"}))]),
            vec![format!("{G}.name")]),
        ("empty name", 0, json!([with(&base, json!({"name": ""}))]), vec![format!("{G}.name")]),
        ("non-ASCII name", 0, json!([with(&base, json!({"name": "ünï"}))]),
            vec![format!("{G}.name")]),
        ("name with a quote", 0, json!([with(&base, json!({"name": "a\"b"}))]),
            vec![format!("{G}.name")]),
        ("name of 65 characters", 0, json!([with(&base, json!({"name": "n".repeat(65)}))]),
            vec![format!("{G}.name")]),
        ("duplicate names in the API's list", 1, json!([base, with(&base, json!({"key": "api"}))]),
            vec!["$.apis[0].policies.rate_limits[1].name".into()]),
        ("duplicate names in a route's list", 2, json!([sw("y", "ip", 1), base, base]),
            vec!["$.apis[0].routes[0].policies.rate_limits[2].name".into()]),
        ("several errors in one limit, in field order", 2,
            json!([with(&base, json!({"limit": 0, "burst": 2, "shards": 0, "queue_ms": 9000}))]),
            ["limit", "burst", "shards", "queue_ms"].iter()
                .map(|f| format!("$.apis[0].routes[0].policies.rate_limits[0].{f}")).collect()),
    ];
    for (name, level, list, want) in cases {
        let mut lists = [json!([]), json!([]), json!([])];
        lists[level] = list;
        let [g, a, r] = lists;
        let (paths, errors) = common::config_errors(&config(g, a, r));
        assert_eq!(paths, want, "{name}: {errors:#?}");
    }

    // These compile: the edges of each range, one name at every level, `off` alone.
    #[rustfmt::skip]
    let valid: Vec<(&str, Value)> = vec![
        ("shards 64, queue_ms 5000", with(&base, json!({"shards": 64, "limit": 64, "queue_ms": 5000}))),
        ("approximate with a lease", with(&base, json!({"mode": "approximate", "lease": 1}))),
        ("plans with key subscription", with(&base, json!({"key": "subscription", "plans": {"rp-gold": 9}}))),
        ("off with nothing else valid",
            json!({"name": "x", "key": "ip", "algorithm": "quota", "limit": 0, "window_s": 0, "mode": "off"})),
        ("a name of 64 of every allowed character", with(&base, json!({"name": format!("aZ0._-{}", "n".repeat(58))}))),
    ];
    for (name, limit) in valid {
        let doc = config(json!([base]), json!([limit]), json!([base]));
        if let Err(e) = edgegate_core::config::compile(&doc.to_string(), "v") {
            panic!("{name}: {e:?}");
        }
    }
}

#[test]
fn auth_failure_limit_config_errors_have_paths() {
    const P: &str = "$.gateway.auth_failure_limit";
    #[rustfmt::skip]
    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!({"limit": 3, "window_s": 0}), vec![format!("{P}.window_s")]),
        (json!({"limit": 3, "window_s": 86_401}), vec![format!("{P}.window_s")]),
        (json!({"limit": 0, "window_s": 60}), vec![format!("{P}.limit")]),
        (json!({"limit": 0, "window_s": 0}), vec![format!("{P}.limit"), format!("{P}.window_s")]),
    ];
    for (spec, want) in cases {
        let (paths, errors) = common::config_errors(&auth_config(spec.clone()));
        assert_eq!(paths, want, "{spec}: {errors:#?}");
    }
    for spec in [
        json!({"limit": 1, "window_s": 1}),
        json!({"limit": 10, "window_s": 86_400, "on_error": "closed"}),
    ] {
        let doc = auth_config(spec.clone());
        if let Err(e) = edgegate_core::config::compile(&doc.to_string(), "v") {
            panic!("{spec}: {e:?}");
        }
    }
}

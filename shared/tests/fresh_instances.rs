//! The gateway on a platform that runs every request in a fresh instance (Spin:
//! `reuses_instances() == false`), over the fake platform with a new `Gateway` per request,
//! built as `spin/src/lib.rs` builds it (every refresh interval 0): round robin rotates
//! through the shared cache, a cache outage falls back to a random pick and never fails the
//! request, failover still works, and approximate rate limits take one unit per request so a
//! limit admits exactly its limit. The same gateways with instances reused (Workers) keep
//! their in-memory behaviour.

use edgegate_core::balancer::shared_position_key;
use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::control::ControlCache;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead, RuntimeSettings};
use edgegate_core::platform::{
    CounterCall, Counters, SharedCache, UpstreamError, UpstreamResponse,
};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

const IP: &str = "203.0.113.1";

/// One API `a` (`/a/...`, route `r` at `/r`) on pool `p` of `instances` (url, weight) with
/// `balance`, and these route `rate_limits`.
fn config(instances: &[(&str, u32)], balance: &str, rate_limits: Value) -> Value {
    let instances: Vec<Value> = instances
        .iter()
        .map(|(url, weight)| json!({"url": url, "weight": weight}))
        .collect();
    json!({
        "pools": { "p": { "instances": instances, "balance": balance } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "routes": [{ "name": "r", "path": "/r", "policies": { "rate_limits": rate_limits } }]
        }]
    })
}

/// A fake platform with `doc` active as `v1`, reusing instances or not.
fn platform(doc: &Value, reuses_instances: bool) -> FakePlatform {
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), &doc.to_string());
    p.set_reuses_instances(reuses_instances);
    p
}

/// The gateway of one request, as `spin/src/lib.rs` builds it (no older copy of anything).
fn fresh_gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_control(ControlCache::new(0))
}

fn head() -> RequestHead {
    RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: "/a/r".into(),
        query: None,
        headers: HeaderList::new(),
        client_ip: Some(IP.into()),
    }
}

/// One request on a gateway of its own (a fresh instance).
fn fresh<P: edgegate_core::platform::Platform<Body = FakeBody, Headers = HeaderList>>(
    p: &P,
) -> GatewayResponse<FakeBody> {
    block_on(fresh_gateway().handle(p, head(), FakeBody::Empty))
}

/// The instance (host) each request upstream went to, in order.
fn hosts(p: &FakePlatform) -> Vec<String> {
    p.sent()
        .iter()
        .map(|(r, _)| {
            r.url
                .trim_start_matches("http://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn events(logs: &[String], name: &str) -> usize {
    logs.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event" && v["event"] == name)
        .count()
}

const TWO: [(&str, u32); 2] = [("http://b1:80", 1), ("http://b2:80", 1)];

// === round robin ===

#[test]
fn round_robin_rotates_across_fresh_instances() {
    let p = platform(&config(&TWO, "round_robin", json!([])), false);
    for _ in 0..4 {
        assert_eq!(fresh(&p).status, 200);
    }
    assert_eq!(hosts(&p), ["b1", "b2", "b1", "b2"]);
    assert!(block_on(p.shared_get(&shared_position_key("p")))
        .unwrap()
        .is_some());
}

#[test]
fn round_robin_on_fresh_instances_respects_weights() {
    let p = platform(
        &config(
            &[("http://b1:80", 3), ("http://b2:80", 1)],
            "round_robin",
            json!([]),
        ),
        false,
    );
    for _ in 0..8 {
        assert_eq!(fresh(&p).status, 200);
    }
    // Smooth weighted round-robin for 3:1: a a b a, as in one isolate.
    assert_eq!(hosts(&p), ["b1", "b1", "b2", "b1", "b1", "b1", "b2", "b1"]);
}

#[test]
fn where_instances_are_reused_round_robin_stays_in_memory() {
    // Workers: one isolate rotates on its own, and nothing is written to the shared cache.
    let p = platform(&config(&TWO, "round_robin", json!([])), true);
    let gw = fresh_gateway();
    for _ in 0..4 {
        assert_eq!(block_on(gw.handle(&p, head(), FakeBody::Empty)).status, 200);
    }
    assert_eq!(hosts(&p), ["b1", "b2", "b1", "b2"]);
    assert!(block_on(p.shared_get(&shared_position_key("p")))
        .unwrap()
        .is_none());
}

#[test]
fn random_on_fresh_instances_draws_from_the_platform_and_keeps_no_position() {
    let p = platform(&config(&TWO, "random", json!([])), false);
    for _ in 0..40 {
        assert_eq!(fresh(&p).status, 200);
    }
    let hosts = hosts(&p);
    assert!(hosts.iter().any(|h| h == "b1") && hosts.iter().any(|h| h == "b2"));
    assert!(block_on(p.shared_get(&shared_position_key("p")))
        .unwrap()
        .is_none());
}

#[test]
fn failover_still_reaches_the_other_instance_and_the_rotation_goes_on() {
    let p = platform(&config(&TWO, "round_robin", json!([])), false);
    p.on_upstream(|req, _, _| {
        if req.url.starts_with("http://b1") {
            Err(UpstreamError::Connect("refused".into()))
        } else {
            Ok(UpstreamResponse {
                status: 200,
                headers: HeaderList::new(),
                body: FakeBody::Empty,
            })
        }
    });
    for _ in 0..3 {
        assert_eq!(fresh(&p).status, 200);
    }
    // First pick b1 (fails over to b2), then b2, then b1 again (fails over).
    assert_eq!(hosts(&p), ["b1", "b2", "b2", "b1", "b2"]);
}

#[test]
fn a_shared_cache_outage_falls_back_to_a_random_pick_and_never_fails() {
    for fail_reads in [true, false] {
        let p = platform(&config(&TWO, "round_robin", json!([])), false);
        p.set_shared_cache_down(fail_reads, true);
        for k in 0..40 {
            assert_eq!(fresh(&p).status, 200, "request {k}");
        }
        let hosts = hosts(&p);
        assert!(
            hosts.iter().any(|h| h == "b1") && hosts.iter().any(|h| h == "b2"),
            "a random pick balances: {hosts:?}"
        );
        assert_eq!(
            events(&p.take_logs(), "balancer_state_unavailable"),
            40,
            "fail_reads: {fail_reads}"
        );
    }
}

// === approximate rate limits ===

fn approximate(limit: u64, lease: u64) -> Value {
    json!([{"name": "cap", "key": "ip", "algorithm": "sliding_window", "limit": limit,
        "window_s": 60, "mode": "approximate", "lease": lease}])
}

#[test]
fn an_approximate_limit_admits_exactly_its_limit_on_fresh_instances() {
    let p = platform(&config(&TWO, "round_robin", approximate(25, 10)), false);
    let statuses: Vec<u16> = (0..30).map(|_| fresh(&p).status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 25);
    assert!(statuses[..25].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[25..].iter().all(|s| *s == 429), "{statuses:?}");
    // One counter call per request, no refunds of leases.
    assert_eq!(p.counter_calls(), 30);
}

#[test]
fn leases_on_fresh_instances_would_lose_their_units() {
    // What the instance check prevents: the same fresh gateways on a platform that claims to
    // reuse instances lease 10 per request and lose 9, so the limit of 25 admits 3.
    let p = platform(&config(&TWO, "round_robin", approximate(25, 10)), true);
    let admitted = (0..30).filter(|_| fresh(&p).status == 200).count();
    assert_eq!(admitted, 3);
}

#[test]
fn where_instances_are_reused_approximate_mode_still_leases() {
    let p = platform(&config(&TWO, "round_robin", approximate(25, 10)), true);
    let gw = fresh_gateway();
    let admitted = (0..30)
        .filter(|_| block_on(gw.handle(&p, head(), FakeBody::Empty)).status == 200)
        .count();
    assert_eq!(admitted, 25);
    // Leases of 10, 10 and 5, then one call per refused request (each asks for a new block).
    assert_eq!(p.counter_calls(), 3 + 5);
}

#[test]
fn a_later_limit_refusing_gives_the_unit_back_to_the_counter_on_fresh_instances() {
    // An approximate limit of 5 first, then an exact limit of 2: requests 3.. are refused by
    // the second, and the first limit's unit goes back to the counter (not into a lease that
    // dies with the instance), so once the second allows again the first has not run out.
    let limits = json!([
        {"name": "wide", "key": "ip", "algorithm": "sliding_window", "limit": 5, "window_s": 60,
            "mode": "approximate", "lease": 10},
        {"name": "narrow", "key": "api", "algorithm": "sliding_window", "limit": 2, "window_s": 60}
    ]);
    let p = platform(&config(&TWO, "round_robin", limits), false);
    let statuses: Vec<u16> = (0..6).map(|_| fresh(&p).status).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    let resp = fresh(&p);
    assert_eq!(resp.status, 429);
    // "wide" has 5 - 2 used = 3 left: the refused requests were refunded.
    let wide = block_on(p.counter(&CounterCall {
        key: format!("rl|route:a/r|wide|ip|{IP}"),
        algorithm: edgegate_core::ratelimit::Algorithm::SlidingWindow {
            limit: 5,
            window_ms: 60_000,
        },
        op: edgegate_core::platform::CounterOp::Peek,
    }))
    .unwrap();
    assert_eq!(wide.decision.remaining, 3);
}

//! The emergency overrides in the pipeline, over the fake platform: blocks before routing,
//! disabled routes after it, audit lines, the isolate cache (cold single-flight, refresh
//! interval, unreachable object), expiry.

mod common;

use common::{platform_with, problem_code};
use edgegate_core::control::{ControlCache, ControlCall};
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead, RuntimeSettings};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

const REFRESH_MS: u64 = 3_000;

fn config() -> Value {
    json!({
        "pools": {"p": {"instances": [{"url": "http://10.0.0.1:8080"}]}},
        "apis": [{"name": "shop", "base_path": "/shop", "pool": "p", "routes": [
            {"name": "items", "methods": ["GET"], "path": "/items"},
            {"name": "orders", "methods": ["GET"], "path": "/orders"}
        ]}]
    })
}

fn gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    })
    .with_control(ControlCache::new(REFRESH_MS))
}

fn req(path: &str, ip: Option<&str>) -> RequestHead {
    let mut h = common::get(path, &[], None);
    h.client_ip = ip.map(str::to_string);
    h
}

fn send(gw: &Gateway, p: &FakePlatform, path: &str, ip: &str) -> GatewayResponse<FakeBody> {
    block_on(gw.handle(p, req(path, Some(ip)), FakeBody::Empty))
}

fn block(cidr: &str) -> ControlCall {
    ControlCall::Block {
        cidr: cidr.parse().expect("cidr"),
        reason: "abuse".into(),
        ttl_s: None,
    }
}

fn lines(p: &FakePlatform, kind: &str) -> Vec<Value> {
    p.take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn blocks_and_disabled_routes_table() {
    let p = platform_with(&config());
    p.control_apply(&block("203.0.113.0/24"));
    p.control_apply(&block("2001:db8::/32"));
    p.control_apply(&ControlCall::DisableRoute {
        route: "shop/orders".into(),
        reason: "incident".into(),
    });
    let gw = gateway();
    // (path, client address, status, code)
    let table = [
        ("/shop/items", "198.51.100.1", 200, ""),
        ("/shop/items", "203.0.113.9", 403, "ip_blocked"),
        ("/shop/items", "::ffff:203.0.113.9", 403, "ip_blocked"),
        ("/nowhere", "203.0.113.9", 403, "ip_blocked"),
        ("/shop/items", "2001:db8:5::1", 403, "ip_blocked"),
        ("/shop/items", "2001:db9::1", 200, ""),
        ("/shop/orders", "198.51.100.1", 503, "route_disabled"),
        ("/shop/orders", "203.0.113.9", 403, "ip_blocked"),
        ("/nowhere", "198.51.100.1", 404, "route_not_found"),
    ];
    for (path, ip, status, code) in table {
        let resp = send(&gw, &p, path, ip);
        assert_eq!(
            (resp.status, problem_code(&resp).as_str()),
            (status, code),
            "{path} from {ip}"
        );
    }
    // No address: never blocked.
    let resp = block_on(gw.handle(&p, req("/shop/items", None), FakeBody::Empty));
    assert_eq!(resp.status, 200);
}

#[test]
fn refusals_are_audit_lines_and_access_lines() {
    let p = platform_with(&config());
    p.control_apply(&block("203.0.113.9"));
    p.control_apply(&ControlCall::DisableRoute {
        route: "shop/orders".into(),
        reason: "incident 9".into(),
    });
    let gw = gateway();
    send(&gw, &p, "/shop/items", "203.0.113.9");
    send(&gw, &p, "/shop/orders", "198.51.100.1");
    let logs = p.take_logs();
    let parsed: Vec<Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let audits: Vec<&Value> = parsed.iter().filter(|v| v["kind"] == "audit").collect();
    assert_eq!(audits.len(), 2, "{logs:#?}");
    assert_eq!(
        (
            audits[0]["rule"].as_str(),
            audits[0]["reason"].as_str(),
            audits[0]["client_ip"].as_str()
        ),
        (
            Some("emergency_block"),
            Some("ip_blocked"),
            Some("203.0.113.9")
        )
    );
    assert_eq!(audits[0]["control_revision"], 2);
    assert_eq!(
        (
            audits[1]["rule"].as_str(),
            audits[1]["api"].as_str(),
            audits[1]["route"].as_str()
        ),
        (Some("route_disabled"), Some("shop"), Some("orders"))
    );
    let access: Vec<&Value> = parsed.iter().filter(|v| v["kind"] == "access").collect();
    assert_eq!(access.len(), 2, "one access line per request");
    assert_eq!(access[0]["error_code"], "ip_blocked");
    assert_eq!(access[1]["error_code"], "route_disabled");
    assert_eq!(access[1]["route"], "orders");
}

#[test]
fn a_change_elsewhere_applies_after_the_refresh_interval() {
    let p = platform_with(&config());
    let gw = gateway();
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    // Another isolate's admin call changes the object.
    p.control_apply(&block("203.0.113.9"));
    p.advance(REFRESH_MS - 1);
    assert_eq!(
        send(&gw, &p, "/shop/items", "203.0.113.9").status,
        200,
        "cached"
    );
    p.advance(1);
    assert_eq!(
        send(&gw, &p, "/shop/items", "203.0.113.9").status,
        403,
        "re-read"
    );
    let calls = p.control_calls();
    send(&gw, &p, "/shop/items", "198.51.100.1");
    assert_eq!(p.control_calls(), calls, "one read per interval");
    let updated = lines(&p, "event");
    assert!(updated
        .iter()
        .any(|e| e["event"] == "control_updated" && e["revision"] == 1));
}

#[test]
fn cold_isolate_waits_for_one_shared_read() {
    let p = platform_with(&config());
    p.control_apply(&block("203.0.113.9"));
    let gw = gateway();
    let all =
        (0..50).map(|_| gw.handle(&p, req("/shop/items", Some("203.0.113.9")), FakeBody::Empty));
    let responses = block_on(futures::future::join_all(all));
    assert!(
        responses.iter().all(|r| r.status == 403),
        "none served before the overrides were known"
    );
    assert_eq!(p.control_calls(), 1, "single-flight");
}

#[test]
fn unreachable_object_keeps_the_last_state_or_fails_open_when_cold() {
    let p = platform_with(&config());
    p.set_control_down(true);
    let gw = gateway();
    assert_eq!(
        send(&gw, &p, "/shop/items", "203.0.113.9").status,
        200,
        "cold: fails open"
    );
    let events = lines(&p, "event");
    let ev = events
        .iter()
        .find(|e| e["event"] == "control_unavailable")
        .expect("logged");
    assert_eq!(
        (ev["failures"].as_u64(), ev["serving_revision"].is_null()),
        (Some(1), true)
    );
    // Reachable again: the next read (after the interval) applies the block.
    p.set_control_down(false);
    p.control_apply(&block("203.0.113.9"));
    p.advance(REFRESH_MS);
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    // Down again: the last known state keeps applying, and the failure is logged.
    p.set_control_down(true);
    p.advance(REFRESH_MS);
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    let events = lines(&p, "event");
    let ev = events
        .iter()
        .find(|e| e["event"] == "control_unavailable")
        .expect("logged");
    assert_eq!(
        (ev["failures"].as_u64(), ev["serving_revision"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn blocks_expire_without_a_refresh() {
    let p = platform_with(&config());
    p.control_apply(&ControlCall::Block {
        cidr: "203.0.113.9".parse().expect("cidr"),
        reason: "short".into(),
        ttl_s: Some(1),
    });
    let gw = gateway();
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    p.advance(1_000);
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    // The object still lists it until its next call drops it.
    assert_eq!(p.control_state().blocks.len(), 1);
    let reply = p.control_apply(&ControlCall::Read);
    assert!(reply.state.blocks.is_empty());
    assert_eq!(reply.state.revision, 2);
}

#[test]
fn background_mode_never_makes_a_request_wait_for_a_warm_read() {
    let p = platform_with(&config());
    let gw = gateway().with_control(ControlCache::new(REFRESH_MS).with_background_refresh());
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    assert!(
        !gw.control().take_wanted(),
        "a cold read is never left to the host"
    );
    p.control_apply(&block("203.0.113.9"));
    p.advance(REFRESH_MS);
    let calls = p.control_calls();
    assert_eq!(
        send(&gw, &p, "/shop/items", "203.0.113.9").status,
        200,
        "served on the known state"
    );
    assert_eq!(p.control_calls(), calls, "no read during the request");
    assert!(gw.control().take_wanted());
    assert!(!gw.control().take_wanted(), "taken once");
    assert!(block_on(gw.control().refresh(&p)));
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    assert!(!gw.control().take_wanted(), "not due again yet");
}

#[test]
fn background_mode_reads_first_after_an_idle_period() {
    let p = platform_with(&config());
    let gw = gateway().with_control(ControlCache::new(REFRESH_MS).with_background_refresh());
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    // Blocked elsewhere while this isolate serves nothing for a minute.
    p.control_apply(&block("203.0.113.9"));
    p.advance(60_000);
    let calls = p.control_calls();
    let all =
        (0..20).map(|_| gw.handle(&p, req("/shop/items", Some("203.0.113.9")), FakeBody::Empty));
    let responses = block_on(futures::future::join_all(all));
    assert!(
        responses.iter().all(|r| r.status == 403),
        "the first requests after the idle period are refused"
    );
    assert_eq!(p.control_calls(), calls + 1, "one shared read");
    assert!(
        !gw.control().take_wanted(),
        "the inline read leaves nothing to the host"
    );
}

#[test]
fn background_mode_serves_a_slightly_stale_state_at_once() {
    let p = platform_with(&config());
    let gw = gateway().with_control(ControlCache::new(REFRESH_MS).with_background_refresh());
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    p.control_apply(&block("203.0.113.9"));
    // Just under the bound (2 × the interval): still served on the known state.
    p.advance(2 * REFRESH_MS - 1);
    let calls = p.control_calls();
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 200);
    assert_eq!(p.control_calls(), calls, "no read during the request");
    assert!(gw.control().take_wanted(), "left to the host");
    assert!(block_on(gw.control().refresh(&p)));
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
}

#[test]
fn background_mode_after_an_idle_period_keeps_the_last_state_when_unreachable() {
    let p = platform_with(&config());
    p.control_apply(&block("203.0.113.9"));
    let gw = gateway().with_control(ControlCache::new(REFRESH_MS).with_background_refresh());
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    p.take_logs();
    p.set_control_down(true);
    p.advance(60_000);
    let calls = p.control_calls();
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    assert_eq!(p.control_calls(), calls + 1, "tried inline");
    let events = lines(&p, "event");
    let ev = events
        .iter()
        .find(|e| e["event"] == "control_unavailable")
        .expect("logged");
    assert_eq!(ev["serving_revision"].as_u64(), Some(1));
    // The failed read counts: the next requests do not each retry inline.
    assert_eq!(send(&gw, &p, "/shop/items", "203.0.113.9").status, 403);
    assert_eq!(p.control_calls(), calls + 1);
}

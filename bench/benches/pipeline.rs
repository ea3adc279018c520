//! The whole core request path: `Gateway::handle` over the in-memory `FakePlatform`.
//!
//! The config (1,000 router entries from `edgegate_bench::generate`) is activated once before
//! measuring, so each measured request takes the cached `Rc<CompiledConfig>`: ids and
//! `traceparent`, path check, `resolve`, upstream header hygiene and forwarding headers,
//! instance choice, the (instant) scripted upstream, response hop-by-hop removal and the
//! access-log line.
//!
//! Each iteration gets a fresh `FakePlatform` (built outside the timing, dropped outside the
//! timing) so the fake's captured requests and log lines do not pile up across millions of
//! iterations. Its clock reads the same instant as the one the config was activated at, so
//! the config-refresh interval never elapses and no KV read happens while measuring (checked).
//!
//! Run: `cargo bench -p edgegate-bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use edgegate_bench::{generate, Probe};
use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::pipeline::{Gateway, RequestHead, RuntimeSettings};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use std::hint::black_box;
use std::time::Duration;

const ENTRIES: usize = 1_000;

/// A platform whose upstream answers at once with a small JSON 200 and typical headers.
fn platform() -> FakePlatform {
    let p = FakePlatform::new();
    p.on_upstream(|_, _, _| {
        Ok(FakePlatform::ok(
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", "27"),
                ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("Cache-Control", "private, max-age=0"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("Server", "backend/1.4"),
            ],
            br#"{"id":1042,"qty":3,"ok":1}"#,
        ))
    });
    p
}

/// A gateway with the config compiled and active, checked with one request per probe.
fn gateway(json: &str, probes: &[(&Probe, u16)]) -> Gateway {
    let gw = Gateway::new(RuntimeSettings::default());
    let p = platform();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), json);
    for (probe, status) in probes {
        let resp = block_on(gw.handle(&p, probe.request_head(), FakeBody::Empty));
        assert_eq!(resp.status, *status, "{} {}", probe.method, probe.path);
    }
    assert!(gw.config_store().active().is_some(), "config not activated");
    // A fresh platform (as in the measured loop) must not touch KV.
    let fresh = platform();
    for (probe, status) in probes {
        let resp = block_on(gw.handle(&fresh, probe.request_head(), FakeBody::Empty));
        assert_eq!(resp.status, *status);
    }
    assert_eq!(
        fresh.kv_reads(),
        0,
        "the measured loop would re-read the config"
    );
    gw
}

fn bench_request(c: &mut Criterion, name: &str, gw: &Gateway, head: &RequestHead) {
    c.bench_function(name, |b| {
        b.iter_batched(
            || (platform(), head.clone()),
            |(p, req)| {
                let resp = block_on(gw.handle(&p, black_box(req), FakeBody::Empty));
                (p, black_box(resp))
            },
            BatchSize::SmallInput,
        )
    });
}

fn pipeline(c: &mut Criterion) {
    let cfg = generate(ENTRIES);
    let probes = &cfg.probes;
    let gw = gateway(
        &cfg.json,
        &[(&probes.param_hit, 200), (&probes.not_found, 404)],
    );
    bench_request(
        c,
        "pipeline/1000/get_200",
        &gw,
        &probes.param_hit.request_head(),
    );
    bench_request(
        c,
        "pipeline/1000/not_found_404",
        &gw,
        &probes.not_found.request_head(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = pipeline
}
criterion_main!(benches);

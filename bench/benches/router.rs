//! Route matching (`CompiledConfig::resolve`) and config compilation.
//!
//! `resolve/{entries}/{case}`: one request resolved against a config with that many router
//! entries (route × version). With 1 entry the config holds only the route the case needs
//! (see `edgegate_bench::single_route`); larger configs come from `edgegate_bench::generate`,
//! whose probe API is the last one inserted.
//!
//! `compile/{entries}`: `config::compile` of the whole JSON document (parse, validate, build
//! and conflict-check the router).
//!
//! Run: `cargo bench -p edgegate-bench --bench router -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use edgegate_bench::{generate, single_route, BenchConfig, Expect, Probe, SingleRoute, CASES};
use edgegate_core::config::{compile, CompiledConfig};
use edgegate_core::route::RouteMiss;
use std::hint::black_box;
use std::time::Duration;

/// Router sizes in entries; 10,000 is the stress case.
const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];

fn compiled(cfg: &BenchConfig) -> CompiledConfig {
    let c = compile(&cfg.json, "v1").unwrap_or_else(|e| panic!("generated config: {e:?}"));
    assert_eq!(c.router().len(), cfg.entries);
    c
}

/// Fails loudly before measuring if a probe does not resolve as intended.
fn assert_probe(config: &CompiledConfig, case: &str, probe: &Probe) {
    let got = config.resolve(&probe.route_request());
    let ok = match (probe.expect, &got) {
        (Expect::Route(name), Ok(r)) => r.route.name == name,
        (Expect::NotFound, Err(RouteMiss::NotFound)) => true,
        (Expect::MethodNotAllowed, Err(RouteMiss::MethodNotAllowed(_))) => true,
        _ => false,
    };
    assert!(ok, "{case}: expected {:?}, got {got:?}", probe.expect);
}

fn resolve(c: &mut Criterion) {
    for n in SIZES {
        let mut group = c.benchmark_group("resolve");
        // Shared generated config for n > 1; one-route configs per case for n = 1.
        let shared = (n > 1).then(|| {
            let cfg = generate(n);
            let compiled = compiled(&cfg);
            (cfg, compiled)
        });
        for case in CASES {
            let owned;
            let (cfg, config) = match &shared {
                Some((cfg, config)) => (cfg, config),
                None => {
                    let cfg = single_route(SingleRoute::for_case(case));
                    let config = compiled(&cfg);
                    owned = (cfg, config);
                    (&owned.0, &owned.1)
                }
            };
            let probe = cfg.probes.case(case);
            assert_probe(config, case, probe);
            let req = probe.route_request();
            group.bench_function(BenchmarkId::new(n.to_string(), case), |b| {
                b.iter(|| black_box(config.resolve(black_box(&req))).is_ok())
            });
        }
        group.finish();
    }
}

fn compile_config(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    // Milliseconds per iteration: flat sampling with few samples keeps the run short.
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    for n in [100usize, 1_000] {
        let cfg = generate(n);
        compiled(&cfg);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| compile(black_box(&cfg.json), "v1").is_ok())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = resolve, compile_config
}
criterion_main!(benches);

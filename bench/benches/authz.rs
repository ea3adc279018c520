//! The authorization decision (issue 4) against a generated 100k-subscription snapshot:
//! IP lists, subscription, environment isolation, scopes and roles, as one route would run
//! them. Target: ≤ 2 µs native per decision without Cedar. Then the same decision with 20
//! Cedar policies (target ≤ 50 µs native).
//!
//! The fixtures are `edgegate_bench::authz_fixture`, which the wasm measurement
//! (`bench/load/snapshot-wasm.mjs`) uses too.
//!
//! Run: `cargo bench -p edgegate-bench --bench authz -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use edgegate_bench::authz_fixture::{Authz, SEED, SUBSCRIPTIONS};
use edgegate_core::authz::authorize;
use std::hint::black_box;

fn authz(c: &mut Criterion) {
    let fixture = Authz::build(SUBSCRIPTIONS, SEED).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} of {} sample callers allowed",
        fixture.rules_allowed(),
        fixture.callers.len()
    );

    let mut i = 0;
    c.bench_function("authorize/5-rules/100k-snapshot", |b| {
        b.iter(|| {
            let caller = &fixture.callers[i % fixture.callers.len()];
            i += 1;
            let req = fixture.rules_request(black_box(&fixture.snapshot), caller);
            authorize(black_box(&fixture.rules), &req)
        })
    });

    let req = fixture.abac_request();
    c.bench_function("authorize/abac-20-policies", |b| {
        b.iter(|| authorize(black_box(&fixture.abac), black_box(&req)))
    });
}

criterion_group!(benches, authz);
criterion_main!(benches);

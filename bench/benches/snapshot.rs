//! The Registry snapshot (issue 4): decode of a generated 100k-subscription snapshot, and the
//! per-request lookups against it.
//!
//! Targets: 100,000 subscriptions in ≤ 16 MB of isolate memory, decode ≤ 100 ms in wasm,
//! lookup ≤ 1 µs. This measures native code; wasm is typically 1.5–3× slower.
//!
//! Run: `cargo bench -p edgegate-bench --bench snapshot -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use edgegate_core::snapshot::{decode, encode, generate, Snapshot, SnapshotDoc};
use std::hint::black_box;

const N: usize = 100_000;

fn fixture() -> (SnapshotDoc, Vec<u8>, Snapshot) {
    let doc = generate(N, 42);
    let bytes = encode(&doc);
    let snap = decode(&bytes).unwrap_or_else(|e| panic!("generated snapshot: {e}"));
    eprintln!(
        "snapshot of {N} subscriptions ({} applications, {} credentials): {} bytes encoded, \
         memory_bytes() = {} ({} per subscription)",
        snap.len().applications,
        snap.len().credentials,
        bytes.len(),
        snap.memory_bytes(),
        snap.memory_bytes() / N
    );
    (doc, bytes, snap)
}

fn snapshot(c: &mut Criterion) {
    let (doc, bytes, snap) = fixture();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    group.bench_function("decode/100k", |b| {
        b.iter(|| decode(black_box(&bytes)).map(|s| s.len()))
    });
    group.finish();

    // 1,024 probes spread over the document, cycled: hits through the hash tables, not one
    // hot cache line.
    let probes: Vec<_> = doc
        .subscriptions
        .iter()
        .step_by(N / 1024)
        .map(|s| {
            (
                s.application_id.as_str(),
                s.api.as_str(),
                s.environment.as_str(),
            )
        })
        .collect();
    let mut group = c.benchmark_group("lookup");
    let mut i = 0;
    group.bench_function("subscriptions_for/hit", |b| {
        b.iter(|| {
            let (app, api, env) = probes[i % probes.len()];
            i += 1;
            black_box(&snap)
                .subscriptions_for(app, api, env)
                .filter(|s| s.covers_version("v2"))
                .count()
        })
    });
    let app = probes[0].0;
    group.bench_function("subscriptions_for/miss", |b| {
        b.iter(|| {
            black_box(&snap)
                .subscriptions_for(black_box(app), "no-such-api", "production")
                .count()
        })
    });
    let keys: Vec<_> = doc
        .credentials
        .iter()
        .step_by(doc.credentials.len() / 1024)
        .map(|c| (c.kind, c.key.as_str()))
        .collect();
    let mut j = 0;
    group.bench_function("credential/hit", |b| {
        b.iter(|| {
            let (kind, key) = keys[j % keys.len()];
            j += 1;
            black_box(&snap).credential(kind, key).map(|c| c.status())
        })
    });
    group.bench_function("application/hit", |b| {
        b.iter(|| {
            black_box(&snap)
                .application(black_box(app))
                .map(|a| a.name().len())
        })
    });
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);

//! Ring build and lookup costs. `cargo bench -p ringlb-ring`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringlb_ring::{HashFn, Probing, Ring, RingConfig};

fn spec() -> RingConfig {
    RingConfig::default()
}

fn large(hash: HashFn) -> RingConfig {
    RingConfig {
        slots: 1 << 16,
        vnodes: 40,
        request_hash: hash,
        vnode_hash: hash,
        probing: Probing::Linear,
        ..RingConfig::default()
    }
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    let three: Vec<u64> = (1..=3).collect();
    group.bench_function("spec N=3 M=512 K=9", |b| {
        b.iter(|| Ring::build(black_box(&spec()), black_box(&three)))
    });
    let thousand: Vec<u64> = (1..=1000).collect();
    group.bench_function("xxh3 N=1000 M=65536 K=40", |b| {
        b.iter(|| Ring::build(black_box(&large(HashFn::Xxh3)), black_box(&thousand)))
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    let three: Vec<u64> = (1..=3).collect();
    let thousand: Vec<u64> = (1..=1000).collect();
    let mut rings = vec![("spec N=3", Ring::build(&spec(), &three))];
    for hash in [HashFn::SplitMix64, HashFn::Murmur3, HashFn::Xxh3] {
        let config = RingConfig {
            request_hash: hash,
            vnode_hash: hash,
            ..spec()
        };
        rings.push((hash.name(), Ring::build(&config, &three)));
    }
    rings.push(("xxh3 N=1000", Ring::build(&large(HashFn::Xxh3), &thousand)));
    for (name, ring) in rings {
        let Ok(ring) = ring else {
            panic!("bench ring {name} does not build")
        };
        let mut key = 100_000u64;
        group.bench_with_input(BenchmarkId::from_parameter(name), &ring, |b, ring| {
            b.iter(|| {
                key = if key >= 999_999 { 100_000 } else { key + 7 };
                ring.lookup(black_box(key))
            })
        });
    }
    let ring = match Ring::build(&spec(), &three) {
        Ok(ring) => ring,
        Err(e) => panic!("{e}"),
    };
    group.bench_function("candidates(3) spec N=3", |b| {
        let mut key = 100_000u64;
        b.iter(|| {
            key = if key >= 999_999 { 100_000 } else { key + 7 };
            ring.candidates(black_box(key)).take(3).sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);

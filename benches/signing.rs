//! Sign and verify costs of the native URL format. Run: `cargo bench --bench signing`.
//! Criterion prints the time per operation (ns/op) for each case.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::signing::{Claims, KeyMaterial, KeyRing, Presented, UrlScope};

const NOW: u64 = 1_800_000_000;
const PATH: &str = "/d/app/1.4.2/app-1.4.2-linux-x86_64.tar.gz";

fn ring() -> KeyRing {
    KeyRing::new(
        "k2",
        vec![
            KeyMaterial { id: "k1".into(), secret: vec![1; 32], verify_only: true },
            KeyMaterial { id: "k2".into(), secret: vec![2; 32], verify_only: false },
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn claims() -> Claims {
    Claims {
        scope: UrlScope::Path(PATH.into()),
        expires: NOW + 900,
        not_before: None,
        customer: Some("acme-corp".into()),
        grant: Some("g_01HZX3K4T9".into()),
        client_net: None,
    }
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let claims = claims();
    c.bench_function("sign (path, customer, grant)", |b| b.iter(|| ring.sign(black_box(&claims))));

    let query = ring.sign(&claims).unwrap_or_default();
    let presented = Presented { path: PATH, query: &query, client_ip: None, now: NOW, skew: 30 };
    c.bench_function("verify valid", |b| b.iter(|| ring.verify(black_box(&presented)).is_ok()));

    let encoded_path = "/d/app/1.4.2/Setup%20App%20%C3%A9.exe";
    let mut c2 = claims.clone();
    c2.scope = UrlScope::Path(encoded_path.into());
    let query2 = ring.sign(&c2).unwrap_or_default();
    let needs_norm = "/d/app/1.4.2/Setup%20App%20%c3%a9.exe";
    let presented2 = Presented { path: needs_norm, query: &query2, client_ip: None, now: NOW, skew: 30 };
    c.bench_function("verify valid (path needs normalising)", |b| {
        b.iter(|| ring.verify(black_box(&presented2)).is_ok())
    });

    let mut bad = query.clone();
    bad.pop();
    bad.push('A');
    let tampered = Presented { path: PATH, query: &bad, client_ip: None, now: NOW, skew: 30 };
    c.bench_function("verify tampered (refused)", |b| b.iter(|| ring.verify(black_box(&tampered)).is_err()));

    let unknown_q = query.replace("kid=k2", "kid=k9");
    let unknown = Presented { path: PATH, query: &unknown_q, client_ip: None, now: NOW, skew: 30 };
    c.bench_function("verify unknown key (refused early)", |b| b.iter(|| ring.verify(black_box(&unknown)).is_err()));
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Cost of what the router does per request with GeoIP on: find the client behind a trusted
//! proxy, look it up, and read its coordinates.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use geoip::testing::{city_database, WORLD};
use geoip::{client_address, Database};

fn lookups(c: &mut Criterion) {
    let db = Database::from_bytes(city_database(&WORLD)).unwrap();
    let located: IpAddr = "3.0.9.9".parse().unwrap();
    let unknown: IpAddr = "192.0.2.1".parse().unwrap();
    let trusted = ["127.0.0.1/32".parse().unwrap()];
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let forwarded: &[&[u8]] = &[b"6.6.6.6, 3.0.9.9"];

    c.bench_function("geoip lookup, located address", |b| {
        b.iter(|| black_box(db.lookup(black_box(located))))
    });
    c.bench_function("geoip lookup, unknown address", |b| {
        b.iter(|| black_box(db.lookup(black_box(unknown))))
    });
    c.bench_function("client address behind a trusted proxy", |b| {
        b.iter(|| black_box(client_address(peer, forwarded.iter().copied(), &trusted)))
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);

//! Writes small but real MaxMind databases for tests (feature `testing`).

use std::collections::BTreeMap;

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde::Serialize;

/// One network and what the database says about it.
pub struct Entry {
    pub network: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub country: &'static str,
}

#[derive(Serialize)]
struct Coordinates {
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
struct Country {
    iso_code: &'static str,
}

#[derive(Serialize)]
struct CityRecord {
    location: Coordinates,
    country: Country,
}

#[derive(Serialize)]
struct CountryRecord {
    country: Country,
}

fn writer(database_type: &str) -> Writer {
    Writer::builder(database_type)
        .description(&[("en", "residency-router test database")])
        .build()
}

fn network(entry: &Entry) -> IpNet {
    entry
        .network
        .parse()
        .expect("test networks are valid CIDRs")
}

/// A City-style database (`location.latitude` / `longitude`, `country.iso_code`).
pub fn city_database(entries: &[Entry]) -> Vec<u8> {
    let mut db = writer("Test-City");
    for e in entries {
        let record = CityRecord {
            location: Coordinates {
                latitude: e.lat,
                longitude: e.lon,
            },
            country: Country {
                iso_code: e.country,
            },
        };
        db.insert(network(e), &record).expect("insert");
    }
    db.to_bytes().expect("serialize")
}

/// A Country-style database (`country.iso_code` only).
pub fn country_database(entries: &[Entry]) -> Vec<u8> {
    let mut db = writer("Test-Country");
    for e in entries {
        let record = CountryRecord {
            country: Country {
                iso_code: e.country,
            },
        };
        db.insert(network(e), &record).expect("insert");
    }
    db.to_bytes().expect("serialize")
}

/// A database of another type (ASN), which the router must refuse.
pub fn asn_database() -> Vec<u8> {
    let mut db = writer("Test-ASN");
    let record = BTreeMap::from([("autonomous_system_number", 64512u32)]);
    db.insert("81.0.0.0/16".parse::<IpNet>().expect("cidr"), &record)
        .expect("insert");
    db.to_bytes().expect("serialize")
}

/// Addresses the router tests use, one per place that matters.
pub const WORLD: [Entry; 5] = [
    // Berlin: nearer Frankfurt than Dublin.
    Entry {
        network: "81.0.0.0/16",
        lat: 52.5,
        lon: 13.4,
        country: "DE",
    },
    Entry {
        network: "2a02:8108::/32",
        lat: 52.5,
        lon: 13.4,
        country: "DE",
    },
    // Cork: nearer Dublin.
    Entry {
        network: "87.32.0.0/16",
        lat: 51.9,
        lon: -8.5,
        country: "IE",
    },
    // Seattle: US West, nearer Oregon.
    Entry {
        network: "34.0.0.0/16",
        lat: 47.6,
        lon: -122.3,
        country: "US",
    },
    // New York: US East, nearer Virginia.
    Entry {
        network: "3.0.0.0/16",
        lat: 40.7,
        lon: -74.0,
        country: "US",
    },
];

//! Real databases written with mmdb-writer, read back through the crate's public API.

use std::net::IpAddr;

use geoip::testing::{asn_database, city_database, country_database, Entry, WORLD};
use geoip::{Database, Kind, LiveDatabase, Location, Reloaded};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn city_databases_give_coordinates_for_ipv4_and_ipv6() {
    let db = Database::from_bytes(city_database(&WORLD)).unwrap();
    assert_eq!(db.kind(), Kind::City);
    for addr in ["81.0.1.2", "2a02:8108::5"] {
        assert_eq!(
            db.lookup(ip(addr)),
            Some(Location::Coordinates {
                lat: 52.5,
                lon: 13.4
            })
        );
    }
    assert_eq!(db.lookup(ip("10.0.0.1")), None);
    assert_eq!(db.lookup(ip("127.0.0.1")), None);
    // IPv4-mapped IPv6 (dual-stack listeners) finds the IPv4 record.
    assert_eq!(
        db.lookup(ip("::ffff:81.0.1.2")),
        Some(Location::Coordinates {
            lat: 52.5,
            lon: 13.4
        })
    );
}

#[test]
fn country_databases_give_iso_codes() {
    let db = Database::from_bytes(country_database(&WORLD)).unwrap();
    assert_eq!(db.kind(), Kind::Country);
    assert_eq!(db.lookup(ip("87.32.9.9")), Some(Location::Country("IE")));
    assert_eq!(db.lookup(ip("192.168.1.1")), None);
}

#[test]
fn garbage_truncated_and_foreign_files_are_refused() {
    assert!(Database::from_bytes(b"not a database".to_vec()).is_err());
    let mut truncated = city_database(&WORLD);
    truncated.truncate(truncated.len() / 2);
    assert!(Database::from_bytes(truncated).is_err());
    let err = Database::from_bytes(asn_database()).unwrap_err();
    assert!(
        err.to_string().contains("neither a City nor a Country"),
        "{err}"
    );
}

#[test]
fn live_database_swaps_good_files_and_keeps_the_old_one_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    std::fs::write(&path, city_database(&WORLD)).unwrap();
    let live = LiveDatabase::open(&path).unwrap();
    assert!(matches!(live.reload_if_changed(), Reloaded::Unchanged));

    // Replaced by rename, as deploy tools do: a City database that moves Cork to Berlin.
    let moved = [Entry {
        network: "87.32.0.0/16",
        lat: 52.5,
        lon: 13.4,
        country: "IE",
    }];
    let staged = dir.path().join("geo.mmdb.new");
    std::fs::write(&staged, city_database(&moved)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    assert!(matches!(live.reload_if_changed(), Reloaded::Swapped));
    let berlin = Some(Location::Coordinates {
        lat: 52.5,
        lon: 13.4,
    });
    assert_eq!(live.current().lookup(ip("87.32.1.1")), berlin);

    std::fs::write(&path, b"garbage that is not a database").unwrap();
    assert!(matches!(live.reload_if_changed(), Reloaded::Kept(_)));
    assert_eq!(live.current().lookup(ip("87.32.1.1")), berlin);
    // A broken file is reported once, not on every poll.
    assert!(matches!(live.reload_if_changed(), Reloaded::Unchanged));

    // A database of the other kind would silently change how sites are chosen.
    std::fs::write(&path, country_database(&WORLD)).unwrap();
    match live.reload_if_changed() {
        Reloaded::Kept(e) => assert!(e.to_string().contains("restart to change the kind"), "{e}"),
        other => panic!("a kind change was not refused: {other:?}"),
    }
    assert_eq!(live.current().kind(), Kind::City);

    // A vanished file is retried on every poll, and the old database keeps serving.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(live.reload_if_changed(), Reloaded::Kept(_)));
    assert!(matches!(live.reload_if_changed(), Reloaded::Kept(_)));
    assert_eq!(live.current().lookup(ip("87.32.1.1")), berlin);
}

#[test]
fn an_unchanged_file_is_shared_and_a_changed_or_broken_one_is_opened_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    std::fs::write(&path, city_database(&WORLD)).unwrap();
    let first = LiveDatabase::open_reusing(&path, None).unwrap();
    let again = LiveDatabase::open_reusing(&path, Some(&first)).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "an unchanged file is read again"
    );

    let staged = dir.path().join("geo.mmdb.new");
    std::fs::write(&staged, city_database(&WORLD)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let changed = LiveDatabase::open_reusing(&path, Some(&first)).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &changed));

    // A broken file is judged, not hidden behind the database that still serves.
    std::fs::write(&path, b"garbage that is not a database").unwrap();
    assert!(LiveDatabase::open_reusing(&path, Some(&changed)).is_err());
    // Another file is never served by the database of the first.
    let other = dir.path().join("other.mmdb");
    std::fs::write(&other, city_database(&WORLD)).unwrap();
    let fresh = LiveDatabase::open_reusing(&other, Some(&changed)).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&fresh, &changed));
}

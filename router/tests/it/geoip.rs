//! GeoIP site choice (SPEC 6) with real databases written by mmdb-writer: nearest site inside
//! the allowed regions only, trusted proxies, Country tables, and hot swaps of the file.

use std::time::Duration;

use crate::common::{json, Cluster, Options, FAST_SHUTDOWN};
use geoip::testing::{city_database, country_database, Entry, WORLD};

const BERLIN: &str = "81.0.3.4";
const BERLIN_V6: &str = "2a02:8108::1";
const CORK: &str = "87.32.5.6";
const SEATTLE: &str = "34.0.7.8";
const NEW_YORK: &str = "3.0.9.9";

fn geo_options(database: Vec<u8>, geoip_table: &str, proxy: &'static str) -> Options {
    Options {
        proxy,
        tables: format!("{FAST_SHUTDOWN}\n[geoip]\ndatabase = \"geo.mmdb\"\nreload_check_ms = 100\n{geoip_table}"),
        files: vec![("geo.mmdb", database)],
        ..Options::default()
    }
}

const TRUST_LOOPBACK: &str = "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]";

/// The site that served `tenant` for a client behind `forwarded_for`.
async fn site_for(cluster: &Cluster, tenant: &str, forwarded_for: &str) -> String {
    let response = cluster
        .get("/", tenant)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap();
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    body["site"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city_database_picks_the_nearest_allowed_site() {
    let cluster = Cluster::start_with(geo_options(city_database(&WORLD), "", TRUST_LOOPBACK)).await;
    for (tenant, client, site) in [
        ("globex", BERLIN, "frankfurt"),
        ("globex", BERLIN_V6, "frankfurt"),
        ("globex", CORK, "dublin"),
        ("acme", SEATTLE, "oregon"),
        ("acme", NEW_YORK, "virginia"),
        // A European client of a US tenant stays in the US, at the nearest US site.
        ("acme", BERLIN, "virginia"),
        ("acme", CORK, "virginia"),
        // A US client of an EU tenant stays in the EU.
        ("initech", SEATTLE, "dublin"),
    ] {
        for _ in 0..3 {
            assert_eq!(
                site_for(&cluster, tenant, client).await,
                site,
                "{tenant} from {client}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_may_name_the_client() {
    // A trusted chain: the right-most untrusted entry is the client (Seattle), not the lie
    // prepended by the client (Berlin) nor the trusted hop (10.0.0.1).
    let trusted = Cluster::start_with(geo_options(city_database(&WORLD), "", TRUST_LOOPBACK)).await;
    let chain = format!("{BERLIN}, {SEATTLE}, 10.0.0.1");
    for _ in 0..4 {
        assert_eq!(site_for(&trusted, "acme", &chain).await, "oregon");
    }

    // No trusted proxies: x-forwarded-for is ignored, the loopback peer has no location, and
    // the sites rotate by weight (virginia 2 : oregon 1) instead of all going to oregon.
    let untrusted = Cluster::start_with(geo_options(city_database(&WORLD), "", "")).await;
    let mut sites = Vec::new();
    for _ in 0..6 {
        sites.push(site_for(&untrusted, "acme", SEATTLE).await);
    }
    assert_eq!(
        sites.iter().filter(|s| *s == "virginia").count(),
        4,
        "{sites:?}"
    );
    assert_eq!(
        sites.iter().filter(|s| *s == "oregon").count(),
        2,
        "{sites:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_database_uses_the_configured_table() {
    let options = geo_options(
        country_database(&WORLD),
        "countries = { DE = \"frankfurt\", IE = \"dublin\", US = \"oregon\" }",
        TRUST_LOOPBACK,
    );
    let cluster = Cluster::start_with(options).await;
    assert_eq!(site_for(&cluster, "globex", CORK).await, "dublin");
    assert_eq!(site_for(&cluster, "globex", BERLIN).await, "frankfurt");
    assert_eq!(site_for(&cluster, "acme", NEW_YORK).await, "oregon");
    // The country's site is in another region: the tenant's own region still serves.
    let site = site_for(&cluster, "acme", CORK).await;
    assert!(["virginia", "oregon"].contains(&site.as_str()), "{site}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_database_file_keeps_the_old_one_and_a_good_one_is_swapped_in() {
    let cluster = Cluster::start_with(Options {
        process: true,
        ..geo_options(city_database(&WORLD), "", TRUST_LOOPBACK)
    })
    .await;
    let path = cluster.dir.path().join("geo.mmdb");
    assert_eq!(site_for(&cluster, "globex", CORK).await, "dublin");

    std::fs::write(&path, b"this is not a MaxMind database").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        site_for(&cluster, "globex", CORK).await,
        "dublin",
        "the old database stopped serving"
    );
    assert!(cluster
        .router
        .log_text()
        .contains("GeoIP database not reloaded"));

    // A good new file (written aside and renamed in) that places Cork next to Berlin.
    let moved = [Entry {
        network: "87.32.0.0/16",
        lat: 52.5,
        lon: 13.4,
        country: "IE",
    }];
    let staged = cluster.dir.path().join("geo.mmdb.new");
    std::fs::write(&staged, city_database(&moved)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let mut swapped = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if site_for(&cluster, "globex", CORK).await == "frankfurt" {
            swapped = true;
            break;
        }
    }
    assert!(swapped, "the new database was not swapped in");
    assert!(cluster
        .router
        .log_text()
        .contains("GeoIP database reloaded"));
}

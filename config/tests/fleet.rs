//! `[tenancy] registry = { etcd = { ... } }`: fleet mode's settings, each mistake reported
//! with its code and place, all at once; nothing here contacts etcd.

use std::path::{Path, PathBuf};

use residency_config::{load, ConfigError};

fn write_config(dir: &Path, registry: &str) -> PathBuf {
    let config = format!(
        "[listen]\nhttp = \"127.0.0.1:8080\"\n\
         [tenancy]\nsources = [{{ header = \"x-tenant-id\" }}]\nunknown = \"reject\"\nregistry = {registry}\n\
         [[regions]]\nname = \"us\"\n[[regions.sites]]\nname = \"virginia\"\nlat = 38.9\nlon = -77.4\nbackends = [\"127.0.0.1:9101\"]\n"
    );
    let path = dir.join("router.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn found(path: &Path) -> Vec<(&'static str, String)> {
    let errors = load(path)
        .expect_err("expected the config to be rejected")
        .0;
    errors
        .iter()
        .map(|e: &ConfigError| (e.code(), e.field().unwrap_or_default().to_owned()))
        .collect()
}

#[test]
fn a_fleet_registry_loads_without_etcd_and_starts_with_no_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"{ etcd = { endpoints = ["http://127.0.0.1:2379", "http://etcd-2.internal:2379"], prefix = "/residency", cache = "registry.cache", router_id = "edge-1" } }"#,
    );
    let snapshot = load(&path).unwrap();
    let etcd = snapshot.etcd.as_ref().expect("fleet mode");
    assert_eq!(etcd.prefix, "/residency");
    assert_eq!(etcd.cache, dir.path().join("registry.cache"));
    assert_eq!(etcd.max_staleness.as_secs(), 300);
    assert_eq!(etcd.router_id, "edge-1");
    // Until etcd or a valid cache answers, the router has no registry and refuses tenants.
    assert!(!snapshot.registry_status.loaded);
    assert!(snapshot.registry.is_empty());
}

#[test]
fn every_etcd_mistake_is_reported_at_once_with_its_code_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        r#"{ etcd = { endpoints = ["127.0.0.1:2379", "https://10.0.0.1:2379", "http://h:0"], prefix = "residency/", cache = "c", max_staleness_s = 0, router_id = "Edge 1", username = "router" } }"#,
    );
    let mut got = found(&path);
    got.sort();
    let at = |f: &str| format!("tenancy.registry.etcd.{f}");
    let mut want = vec![
        ("invalid_address", at("endpoints[0]")),
        ("conflicting_settings", at("endpoints[1]")),
        ("invalid_address", at("endpoints[2]")),
        ("invalid_value", at("prefix")),
        ("out_of_range", at("max_staleness_s")),
        ("invalid_name", at("router_id")),
        ("missing_setting", at("password_file")),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_misspelt_key_inside_the_etcd_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for (registry, wanted) in [
        (
            r#"{ etcd = { endpoint = ["http://127.0.0.1:2379"], prefix = "/r", cache = "c" } }"#,
            "unknown field `endpoint`",
        ),
        (r#"{ etc = { endpoints = [] } }"#, "unknown field `etc`"),
        (
            r#"{ etcd = { prefix = "/r", cache = "c" } }"#,
            "missing field `endpoints`",
        ),
    ] {
        let path = write_config(dir.path(), registry);
        let errors = load(&path).expect_err("rejected");
        assert_eq!(
            errors.0[0].code(),
            if wanted.starts_with("missing") {
                "missing_field"
            } else {
                "unknown_field"
            },
            "{errors}"
        );
        assert!(errors.to_string().contains(wanted), "{errors}");
    }
}

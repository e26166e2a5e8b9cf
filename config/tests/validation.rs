//! Loading real files from disk: the shipped examples, and every kind of mistake.

use std::path::{Path, PathBuf};

use config::{load, ConfigError};
use regions::{ReplicationMode, TenantId, UnixTime};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Writes `router.toml` and `tenants.json` into a fresh directory.
fn write(router: &str, tenants: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("router.toml"), router).unwrap();
    std::fs::write(dir.path().join("tenants.json"), tenants).unwrap();
    let path = dir.path().join("router.toml");
    (dir, path)
}

fn example_router() -> String {
    std::fs::read_to_string(examples_dir().join("router.toml")).unwrap()
}

fn example_tenants() -> String {
    std::fs::read_to_string(examples_dir().join("tenants.json")).unwrap()
}

fn error_lines(router: &str, tenants: &str) -> Vec<String> {
    let (_dir, path) = write(router, tenants);
    let errors = load(&path).expect_err("expected the config to be rejected");
    errors.0.iter().map(ToString::to_string).collect()
}

fn assert_reports(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no error mentions {needle:?}; got:\n{}",
        lines.join("\n")
    );
}

#[test]
fn every_shipped_example_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{} is invalid:\n{e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config found");
}

#[test]
fn example_config_loads_the_2x2_topology_and_registry() {
    let snapshot = load(&examples_dir().join("router.toml")).unwrap();
    let t = &snapshot.topology;
    let names: Vec<_> = t.sites().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names, ["virginia", "oregon", "frankfurt", "dublin"]);
    let us = t.region_by_name("us").unwrap();
    let eu = t.region_by_name("eu").unwrap();
    assert_eq!(t.region_for_host("eu.api.example.com"), Some(eu));
    assert_eq!(
        snapshot
            .site_backends(t.site_by_name("virginia").unwrap())
            .len(),
        2
    );
    assert_eq!(snapshot.registry.len(), 3);
    let globex = snapshot
        .registry
        .get(&TenantId::parse(b"globex").unwrap())
        .unwrap();
    assert_eq!(globex.home, eu);
    let replication = globex.replication.unwrap();
    assert_eq!(replication.mode, ReplicationMode::ReadReplica);
    assert!(replication.regions.contains(us));
    let initech = snapshot
        .registry
        .get(&TenantId::parse(b"initech").unwrap())
        .unwrap();
    assert_eq!(
        initech.replication.unwrap().expires_at,
        Some(UnixTime(1_798_761_600))
    );
    assert_eq!(snapshot.identifier.sources().len(), 3);
}

#[test]
fn unknown_fields_are_rejected_with_line_and_column() {
    let router = example_router().replace("[listen]\n", "[listen]\nhttps = \"0.0.0.0:8443\"\n");
    let lines = error_lines(&router, &example_tenants());
    assert_reports(&lines, "unknown field `https`");
    assert_reports(&lines, "router.toml:");
    let (_dir, path) = write(&router, &example_tenants());
    match &load(&path).unwrap_err().0[0] {
        ConfigError::Parse { line, .. } => assert!(*line > 1),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn unknown_fields_in_the_registry_are_rejected() {
    let tenants = r#"{ "tenants": [ { "id": "acme", "region": "us", "plan": "gold" } ] }"#;
    assert_reports(
        &error_lines(&example_router(), tenants),
        "unknown field `plan`",
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_location() {
    let router = example_router()
        .replace("name = \"oregon\"", "name = \"frankfurt\"")
        .replace("\"127.0.0.1:9211\"", "\"127.0.0.1:9201\"")
        .replace("\"127.0.0.1:9111\"", "\"not an address\"")
        .replace(
            "{ path = \"/t/{tenant}/\" }",
            "{ path = \"/t/{tenant}/\" }, { host = \"{tenant}.api.example.com\" }",
        );
    let tenants = r#"{ "tenants": [
        { "id": "acme", "region": "us" },
        { "id": "acme", "region": "us" },
        { "id": "Bad_Id", "region": "us" },
        { "id": "x", "region": "mars" },
        { "id": "y", "region": "eu", "replication": { "regions": ["eu"], "mode": "active" } },
        { "id": "z", "region": "eu", "replication": { "regions": ["moon"], "mode": "active" } },
        { "id": "w", "region": "eu", "replication": { "regions": ["us"], "mode": "active", "expires_at": "tomorrow" } }
    ] }"#;
    let lines = error_lines(&router, tenants);
    for needle in [
        "regions[1].sites[0].name: site `frankfurt` is already defined in region `us`",
        "regions[1].sites[1].backends[0]: backend 127.0.0.1:9201 is already a backend of site `eu/frankfurt`",
        "regions[0].sites[1].backends[0]: `not an address` is not a resolvable",
        "tenancy.sources[3].host: pattern `{tenant}.api.example.com` matches region host `us.api.example.com`",
        "tenants[1].id: tenant `acme` is already defined at tenants[0]",
        "tenants[2].id",
        "tenants[3].region: region `mars` is not defined",
        "tenants[4].replication.regions[0]: `eu` is the tenant's home region",
        "tenants[5].replication.regions[0]: region `moon` is not defined",
        "tenants[6].replication.expires_at",
    ] {
        assert_reports(&lines, needle);
    }
    assert!(
        lines.iter().all(|l| l.contains("fix:")),
        "every problem says how to fix it: {lines:#?}"
    );
}

#[test]
fn source_and_policy_mistakes_are_explained() {
    let router = example_router()
        .replace("unknown  = \"reject\"", "unknown  = { region = \"apac\" }")
        .replace(
            "{ header = \"x-tenant-id\" }",
            "{ header = \"x-tenant-id\", path = \"/t/{tenant}/\" }",
        )
        .replace(
            "{ host = \"{tenant}.app.example.com\" }",
            "{ host = \"app.example.com\", strip = true }",
        );
    let lines = error_lines(&router, &example_tenants());
    assert_reports(&lines, "tenancy.sources[1]: a source must have exactly one");
    assert_reports(&lines, "tenancy.sources[0].strip");
    assert_reports(
        &lines,
        "tenancy.sources[0]: the pattern must contain `{tenant}`",
    );
    assert_reports(
        &lines,
        "tenancy.unknown.region: region `apac` is not defined; fix: use one of: us, eu",
    );
}

#[test]
fn missing_or_broken_registry_is_an_error() {
    let (dir, path) = write(&example_router(), "{ \"tenants\": [ ");
    let errors = load(&path).unwrap_err();
    assert!(matches!(errors.0[0], ConfigError::Parse { .. }), "{errors}");
    std::fs::remove_file(dir.path().join("tenants.json")).unwrap();
    let errors = load(&path).unwrap_err();
    assert!(matches!(errors.0[0], ConfigError::Read { .. }), "{errors}");
}

#[test]
fn fallback_region_and_defaults() {
    let router =
        example_router().replace("unknown  = \"reject\"", "unknown  = { region = \"us\" }");
    let (_dir, path) = write(&router, &example_tenants());
    let snapshot = load(&path).unwrap();
    assert_eq!(
        snapshot.unknown,
        regions::UnknownTenantPolicy::Fallback(snapshot.topology.region_by_name("us").unwrap())
    );
    assert_eq!(snapshot.proxy.max_attempts, 4);
}

#[test]
fn zero_counts_and_durations_are_rejected() {
    let router = example_router()
        .replace("max_attempts = 4", "max_attempts = 0")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 0")
        .replace("# threads = 2", "threads = 0");
    let lines = error_lines(&router, &example_tenants());
    assert_reports(
        &lines,
        "proxy.max_attempts: must be greater than 0; fix: 1 means no retry",
    );
    assert_reports(&lines, "proxy.connect_timeout_ms: must be greater than 0");
    assert_reports(&lines, "server.threads: must be greater than 0");
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

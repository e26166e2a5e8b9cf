//! Loading real files from disk: the shipped examples, and every kind of mistake.

use std::path::{Path, PathBuf};

use regions::{ReplicationMode, TenantId};
use residency_config::{load, ConfigError};

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
    rejection_lines(&path)
}

/// Every problem `load` reports for the config at `path`, one line each.
fn rejection_lines(path: &std::path::Path) -> Vec<String> {
    let errors = load(path).expect_err("expected the config to be rejected");
    errors.0.iter().map(ToString::to_string).collect()
}

fn assert_reports(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no error mentions {needle:?}; got:\n{}",
        lines.join("\n")
    );
}

/// One line reports `message` at `at` (`FILE:LINE:`).
fn assert_reported_at(lines: &[String], at: &str, message: &str) {
    assert!(
        lines.iter().any(|l| l.contains(at) && l.contains(message)),
        "no {message:?} at {at}; got:\n{}",
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
            .site(t.site_by_name("virginia").unwrap())
            .backends
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
    // Shipped data never expires on a calendar date (the demo computes its own expiry).
    assert_eq!(initech.replication.unwrap().expires_at, None);
    assert_eq!(snapshot.identifier.sources().len(), 3);
}

#[test]
fn unknown_fields_are_rejected_with_line_and_column() {
    let router = example_router().replace("[listen]\n", "[listen]\nhttp3 = \"0.0.0.0:8443\"\n");
    let lines = error_lines(&router, &example_tenants());
    assert_reports(&lines, "unknown field `http3`");
    assert_reports(&lines, "router.toml:");
    let (_dir, path) = write(&router, &example_tenants());
    match &load(&path).unwrap_err().0[0] {
        ConfigError::Parse { line, .. } => assert!(*line > 1),
        other => panic!("expected a parse error, got {other}"),
    }
}

/// serde stops at the first unknown field, wrong type or missing field; the router reports
/// each of them, at its own line, and nothing that only follows from skipping one.
#[test]
fn every_schema_problem_is_reported_at_once_with_its_line() {
    let router = example_router()
        .replace("[listen]\n", "[listen]\nhttp3 = \"0.0.0.0:8443\"\n")
        .replace("[proxy]\n", "[unused]\nkey = [\n  1,\n  2,\n]\n\n[proxy]\n")
        .replace(
            "{ header = \"x-tenant-id\" }",
            "{ header = \"x-tenant-id\", strip = 1 }",
        )
        .replace("{ path = \"/t/{tenant}/\" }", "{ paht = \"/t/{tenant}/\" }")
        .replace("max_attempts = 4", "max_attempts = \"four\"")
        .replace("name = \"oregon\"", "name = 5\n  wieght = 3")
        .replace("name = \"frankfurt\"", "name = \"frankfurt\"\n  lon2 = 8.7")
        .replace("  lat = 53.3\n", "");
    let line_of = |needle: &str| {
        let offset = router.find(needle).expect(needle);
        router[..offset].matches('\n').count() + 1
    };
    let expected = [
        (line_of("http3"), "unknown field `http3`"),
        (
            line_of("strip = 1"),
            "invalid type: integer `1`, expected a boolean",
        ),
        (line_of("paht"), "unknown field `paht`"),
        (line_of("[unused]"), "unknown field `unused`"),
        (
            line_of("\"four\""),
            "invalid type: string \"four\", expected u32",
        ),
        (
            line_of("name = 5"),
            "invalid type: integer `5`, expected a string",
        ),
        (line_of("wieght"), "unknown field `wieght`"),
        (line_of("lon2"), "unknown field `lon2`"),
        // Reported at the table lacking it: dublin's.
        (
            line_of("[[regions.sites]]\n  name = \"dublin\""),
            "missing field `lat`",
        ),
    ];
    let lines = error_lines(&router, &example_tenants());
    for (line, message) in expected {
        assert_reported_at(&lines, &format!("router.toml:{line}:"), message);
    }
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
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
fn every_bad_registry_entry_is_reported_at_once_with_its_line() {
    let tenants = r#"{ "tenants": [
  { "id": "acme", "region": "us", "plan": "gold" },
  { "id": "globex", "region": "eu" },
  { "id": "initech", "region": "eu", "replication": { "regions": ["us"], "mode": "mirror" } },
  { "id": 7, "region": "us" }
] }"#;
    let lines = error_lines(&example_router(), tenants);
    for (line, message) in [
        (2, "unknown field `plan`"),
        (4, "unknown variant `mirror`"),
        (5, "invalid type: integer `7`, expected a string"),
    ] {
        assert_reported_at(&lines, &format!("tenants.json:{line}:"), message);
    }
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(" at line ")), "{lines:#?}");

    // The file's own shape: one error, where it is.
    let lines = error_lines(&example_router(), "{ \"tenants\": [], \"version\": 2 }");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reports(&lines, "tenants.json:1:");
    assert_reports(&lines, "unknown field `version`");
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
fn client_traffic_needs_a_listener() {
    let without_http = example_router().replace("http    = \"0.0.0.0:8080\"\n", "");
    assert_ne!(without_http, example_router());
    let lines = error_lines(&without_http, &example_tenants());
    assert_reports(&lines, "listen: no listener for client traffic");
    let lines = error_lines(
        &without_http.replace("[listen]\n", "[listen]\nh2c = true\n"),
        &example_tenants(),
    );
    assert_reports(&lines, "listen.h2c: h2c is served on listen.http");
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

#[test]
fn site_health_overrides_defaults_field_by_field() {
    let snapshot = load(&examples_dir().join("router.toml")).unwrap();
    let site = |name: &str| snapshot.site(snapshot.topology.site_by_name(name).unwrap());
    let virginia = site("virginia");
    assert_eq!(virginia.health.check, residency_config::ActiveCheck::Tcp);
    assert_eq!(virginia.backends[1].weight, 2);
    assert_eq!(
        virginia.balance,
        residency_config::Balance::WeightedRoundRobin
    );
    let oregon = site("oregon");
    match &oregon.health.check {
        residency_config::ActiveCheck::Http(http) => {
            assert_eq!(http.path, "/ready");
            assert_eq!(http.method, "GET");
            assert_eq!(http.expect_status, 200..=399);
        }
        other => panic!("expected an http check, got {other:?}"),
    }
    // Everything not overridden comes from [health].
    assert_eq!(oregon.health.interval, virginia.health.interval);
    assert_eq!(oregon.health.outlier, virginia.health.outlier);
}

#[test]
fn health_and_balance_mistakes_are_reported_with_their_site() {
    let router = example_router()
        .replace("timeout_ms = 1000", "timeout_ms = 5000")
        .replace("max_ejected_percent = 50", "max_ejected_percent = 150")
        .replace(
            "http_path = \"/ready\"",
            "http_path = \"ready\"\n    http_expect_status = [399, 200]",
        )
        .replace(
            "{ address = \"127.0.0.1:9102\", weight = 2 }",
            "{ address = \"127.0.0.1:9102\", weight = 0 }",
        )
        .replace(
            "trusted_proxies = []",
            "trusted_proxies = [\"10.0.0.0/8\", \"not-a-net\"]",
        )
        .replace(
            "  backends = [\"127.0.0.1:9201\"]",
            "  backends = [\"127.0.0.1:9201\"]\n    [regions.sites.health]\n    http_path = \"/x\"",
        );
    let lines = error_lines(&router, &example_tenants());
    for needle in [
        "health.timeout_ms: the check timeout (5s) is longer than its interval (2s)",
        "health.max_ejected_percent: 150% is more than all backends",
        "regions[0].sites[1].health.http_path: `ready` is not a request path",
        "regions[0].sites[1].health.http_expect_status",
        "regions[0].sites[0].backends[1].weight: weight 0 is out of range",
        "proxy.trusted_proxies[1]: `not-a-net` is not a CIDR",
        "regions[1].sites[0].health.check: http_* settings are set but the check is not `http`",
    ] {
        assert_reports(&lines, needle);
    }
}

#[test]
fn geoip_databases_are_opened_and_checked_at_load() {
    use geoip::testing::{asn_database, city_database, country_database, WORLD};
    let with_geoip = |section: &str| format!("{}\n{section}\n", example_router());
    // A City database needs no table.
    let (dir, path) = write(
        &with_geoip("[geoip]\ndatabase = \"geo.mmdb\""),
        &example_tenants(),
    );
    std::fs::write(dir.path().join("geo.mmdb"), city_database(&WORLD)).unwrap();
    let snapshot = load(&path).unwrap();
    assert_eq!(
        snapshot.geoip.unwrap().database.current().kind(),
        geoip::Kind::City
    );

    // A Country database needs its table, with real sites and ISO codes.
    std::fs::write(dir.path().join("geo.mmdb"), country_database(&WORLD)).unwrap();
    let lines = rejection_lines(&path);
    assert_reports(
        &lines,
        "geoip.countries: a Country database needs a country -> site table",
    );
    std::fs::write(
        &path,
        with_geoip("[geoip]\ndatabase = \"geo.mmdb\"\ncountries = { DE = \"frankfurt\", de = \"dublin\", IE = \"atlantis\" }"),
    )
    .unwrap();
    let lines = rejection_lines(&path);
    assert_reports(
        &lines,
        "geoip.countries.de: `de` is not an ISO 3166-1 alpha-2 code",
    );
    assert_reports(&lines, "geoip.countries.IE: site `atlantis` is not defined");

    // Garbage, missing and non-geo databases are refused.
    for bytes in [b"garbage".to_vec(), asn_database()] {
        std::fs::write(dir.path().join("geo.mmdb"), bytes).unwrap();
        let lines = rejection_lines(&path);
        assert_reports(&lines, "geoip.database:");
    }
    std::fs::remove_file(dir.path().join("geo.mmdb")).unwrap();
    let lines = rejection_lines(&path);
    assert_reports(&lines, "geoip.database: cannot read");
}

#[test]
fn start_unhealthy_without_checks_and_absurd_durations_are_rejected() {
    let router = example_router()
        .replace("start_unhealthy = false", "start_unhealthy = true")
        .replace("max_ejection_ms = 300000", "max_ejection_ms = 9999999999")
        .replace(
            "  backends = [\"127.0.0.1:9201\"]",
            "  backends = [\"127.0.0.1:9201\"]\n    [regions.sites.health]\n    check = \"none\"",
        );
    let lines = error_lines(&router, &example_tenants());
    assert_reports(
        &lines,
        "regions[1].sites[0].health.start_unhealthy: backends would wait forever",
    );
    assert_reports(
        &lines,
        "health.max_ejection_ms: 9999999999 ms is longer than a day",
    );
}

#[test]
fn country_table_is_checked_even_when_the_database_is_unreadable() {
    let router = format!(
        "{}\n[geoip]\ndatabase = \"missing.mmdb\"\ncountries = {{ DE = \"atlantis\" }}\n",
        example_router()
    );
    let lines = error_lines(&router, &example_tenants());
    assert_reports(&lines, "geoip.database: cannot read");
    assert_reports(&lines, "geoip.countries.DE: site `atlantis` is not defined");
}

#[test]
fn admin_tokens_are_checked_and_every_problem_reported() {
    let router = example_router()
        .replace("role = \"operator\"  ", "role = \"root\"      ")
        .replace(
            "tenants = [\"acme\"]               # the tenants",
            "tenants = [\"Acme\", \"ok\"]          # the tenants",
        )
        .replace(
            "7ae880c62c89f7c2e0262fdb86eb0e082820c49765f6ebc07363a86b88f517a1",
            "cadaee6d96cfc6f48b78f8783c9493f48be29ff3e90ac85c219f014cb73b1eae",
        )
        .replace("audit_retention_days = 2196", "audit_retention_days = 0")
        + "\n[[admin.tokens]]\nname = \"watcher\"\nrole = \"viewer\"\ntenants = [\"acme\"]\nsha256 = \"abc\"\n";
    let lines = error_lines(&router, &example_tenants());
    assert_reports(&lines, "admin.tokens[0].role: unknown role `root`");
    assert_reports(
        &lines,
        "admin.tokens[1].tenants[0]: tenant id `Acme` is not lowercase",
    );
    assert_reports(
        &lines,
        "admin.tokens[1].sha256: the same token as admin.tokens[0]",
    );
    assert_reports(&lines, "admin.tokens[2].sha256: not 64 hexadecimal digits");
    assert_reports(
        &lines,
        "admin.tokens[2].tenants: only tenant-admin tokens are scoped",
    );
    assert_reports(&lines, "admin.audit_retention_days: must be greater than 0");
    assert_eq!(lines.len(), 6, "{lines:#?}");

    let without_table = example_router().replace("[admin]", "[unused]");
    let lines = error_lines(&without_table, &example_tenants());
    assert!(
        lines.iter().any(|l| l.contains("unknown field `unused`")),
        "{lines:#?}"
    );

    let snapshot = load(&examples_dir().join("router.toml")).unwrap();
    let admin = snapshot.admin.expect("the example serves the admin API");
    assert_eq!(admin.tokens.len(), 2);
    assert_eq!(admin.tokens[1].role, residency_config::Role::TenantAdmin);
    assert_eq!(admin.tokens[1].tenants[0].as_str(), "acme");
    assert_eq!(admin.audit.path, examples_dir().join("audit.log"));
    assert_eq!(admin.audit.retention.as_secs(), 2196 * 86_400);
}

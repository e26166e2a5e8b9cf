//! Loading real files from disk: the shipped examples, and every kind of mistake. Which
//! problem was found is judged by its code and field (or file and line); the prose is checked
//! only where it is the contract (the fixes).

use std::cell::RefCell;
use std::collections::BTreeSet;
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
    problems(router, tenants)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Every problem `load` reports for `router` and `tenants`.
fn problems(router: &str, tenants: &str) -> Vec<ConfigError> {
    let (_dir, path) = write(router, tenants);
    rejection(&path)
}

/// Every problem `load` reports for the config at `path`.
fn rejection(path: &Path) -> Vec<ConfigError> {
    load(path)
        .expect_err("expected the config to be rejected")
        .0
}

thread_local! {
    /// The codes this thread's assertions found: `every_code_is_produced_by_a_case` runs the
    /// cases on its own thread and checks that together they meet every code in the list.
    static MET: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

fn describe(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {} {:?}: {e}", e.code(), e.field()))
        .collect();
    lines.join("\n")
}

/// A problem of kind `code` was found at `field`, the place in the document.
#[track_caller]
fn assert_found(errors: &[ConfigError], code: &str, field: &str) {
    match errors
        .iter()
        .find(|e| e.code() == code && e.field() == Some(field))
    {
        Some(e) => MET.with(|met| met.borrow_mut().insert(e.code())),
        None => panic!("no {code} at {field}; got:\n{}", describe(errors)),
    };
}

/// A problem of kind `code` was found in the file named `file`, at `line` for a parse error
/// (`None` for a file that could not be read).
#[track_caller]
fn assert_found_at(errors: &[ConfigError], code: &str, file: &str, line: Option<usize>) {
    let named = |path: &Path| path.file_name().is_some_and(|name| name == file);
    match errors.iter().find(|e| {
        e.code() == code
            && match e {
                ConfigError::Parse {
                    file: path,
                    line: l,
                    ..
                } => named(path) && line == Some(*l),
                ConfigError::Read { file: path, .. } => named(path) && line.is_none(),
                ConfigError::Invalid { .. } => false,
            }
    }) {
        Some(e) => MET.with(|met| met.borrow_mut().insert(e.code())),
        None => panic!(
            "no {code} in {file} at {line:?}; got:\n{}",
            describe(errors)
        ),
    };
}

/// One line reports `message`: for the few checks where the text itself is the contract.
fn assert_reports(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no error mentions {needle:?}; got:\n{}",
        lines.join("\n")
    );
}

/// The 1-based line of `needle`'s first occurrence in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let offset = text.find(needle).expect(needle);
    text[..offset].matches('\n').count() + 1
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
    let errors = problems(&router, &example_tenants());
    let line = line_of(&router, "http3");
    assert_found_at(&errors, "unknown_field", "router.toml", Some(line));
    match &errors[0] {
        ConfigError::Parse {
            line: l, column, ..
        } => assert_eq!((*l, *column), (line, 1)),
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
    let line_of = |needle: &str| line_of(&router, needle);
    let expected = [
        (line_of("http3"), "unknown_field"),
        (line_of("strip = 1"), "wrong_type"),
        (line_of("paht"), "unknown_field"),
        (line_of("[unused]"), "unknown_field"),
        (line_of("\"four\""), "wrong_type"),
        (line_of("name = 5"), "wrong_type"),
        (line_of("wieght"), "unknown_field"),
        (line_of("lon2"), "unknown_field"),
        // Reported at the table lacking it: dublin's.
        (
            line_of("[[regions.sites]]\n  name = \"dublin\""),
            "missing_field",
        ),
    ];
    let errors = problems(&router, &example_tenants());
    for (line, code) in expected {
        assert_found_at(&errors, code, "router.toml", Some(line));
    }
    assert_eq!(errors.len(), expected.len(), "{}", describe(&errors));
}

#[test]
fn unknown_fields_in_the_registry_are_rejected() {
    let tenants = r#"{ "tenants": [ { "id": "acme", "region": "us", "plan": "gold" } ] }"#;
    let errors = problems(&example_router(), tenants);
    assert_found_at(&errors, "unknown_field", "tenants.json", Some(1));
}

#[test]
fn every_bad_registry_entry_is_reported_at_once_with_its_line() {
    let tenants = r#"{ "tenants": [
  { "id": "acme", "region": "us", "plan": "gold" },
  { "id": "globex", "region": "eu" },
  { "id": "initech", "region": "eu", "replication": { "regions": ["us"], "mode": "mirror" } },
  { "id": 7, "region": "us" }
] }"#;
    let errors = problems(&example_router(), tenants);
    for (line, code) in [
        (2, "unknown_field"),
        // `mode = "mirror"`
        (4, "wrong_type"),
        (5, "wrong_type"),
    ] {
        assert_found_at(&errors, code, "tenants.json", Some(line));
    }
    assert_eq!(errors.len(), 3, "{}", describe(&errors));
    // serde_json's own position, relative to the entry, is not passed on.
    let lines = error_lines(&example_router(), tenants);
    assert!(!lines.iter().any(|l| l.contains(" at line ")), "{lines:#?}");

    // The file's own shape: one error, where it is.
    let errors = problems(&example_router(), "{ \"tenants\": [], \"version\": 2 }");
    assert_eq!(errors.len(), 1, "{}", describe(&errors));
    assert_found_at(&errors, "unknown_field", "tenants.json", Some(1));
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
    let errors = problems(&router, tenants);
    for (code, field) in [
        ("duplicate_name", "regions[1].sites[0].name"),
        ("duplicate_entry", "regions[1].sites[1].backends[0]"),
        ("invalid_address", "regions[0].sites[1].backends[0]"),
        // The tenant pattern matches region host `us.api.example.com`.
        ("conflicting_settings", "tenancy.sources[3].host"),
        ("duplicate_name", "tenants[1].id"),
        ("invalid_tenant", "tenants[2].id"),
        ("unknown_region", "tenants[3].region"),
        (
            "replication_to_home_region",
            "tenants[4].replication.regions[0]",
        ),
        ("unknown_region", "tenants[5].replication.regions[0]"),
        ("invalid_expiry", "tenants[6].replication.expires_at"),
    ] {
        assert_found(&errors, code, field);
    }
    let lines = error_lines(&router, tenants);
    assert!(
        lines.iter().all(|l| l.contains("fix:")),
        "every problem says how to fix it: {lines:#?}"
    );
}

#[test]
fn client_traffic_needs_a_listener() {
    let without_http = example_router().replace("http    = \"0.0.0.0:8080\"\n", "");
    assert_ne!(without_http, example_router());
    let errors = problems(&without_http, &example_tenants());
    assert_found(&errors, "missing_setting", "listen");
    let errors = problems(
        &without_http.replace("[listen]\n", "[listen]\nh2c = true\n"),
        &example_tenants(),
    );
    assert_found(&errors, "missing_setting", "listen.h2c");
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
    let errors = problems(&router, &example_tenants());
    // Both `header` and `path`.
    assert_found(&errors, "conflicting_settings", "tenancy.sources[1]");
    assert_found(&errors, "conflicting_settings", "tenancy.sources[0].strip");
    // No `{tenant}` in the pattern.
    assert_found(&errors, "invalid_value", "tenancy.sources[0]");
    assert_found(&errors, "unknown_region", "tenancy.unknown.region");
    // The fix names the regions there are.
    let lines = error_lines(&router, &example_tenants());
    assert_reports(
        &lines,
        "tenancy.unknown.region: region `apac` is not defined; fix: use one of: us, eu",
    );
}

#[test]
fn missing_or_broken_registry_is_an_error() {
    let (dir, path) = write(&example_router(), "{ \"tenants\": [ ");
    let errors = rejection(&path);
    assert!(matches!(errors[0], ConfigError::Parse { .. }), "{errors:?}");
    assert_found_at(&errors, "syntax", "tenants.json", Some(1));
    std::fs::remove_file(dir.path().join("tenants.json")).unwrap();
    let errors = rejection(&path);
    assert!(matches!(errors[0], ConfigError::Read { .. }), "{errors:?}");
    assert_found_at(&errors, "unreadable_file", "tenants.json", None);
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
        .replace(
            "upstream_keepalive_pool = 10000",
            "upstream_keepalive_pool = 0",
        )
        .replace("# threads = 2", "threads = 0");
    let errors = problems(&router, &example_tenants());
    for field in [
        "proxy.max_attempts",
        "proxy.connect_timeout_ms",
        "proxy.upstream_keepalive_pool",
        "server.threads",
    ] {
        assert_found(&errors, "out_of_range", field);
    }
    assert_eq!(errors.len(), 4, "{}", describe(&errors));
    // Each setting's fix says what its smallest value means.
    assert_reports(
        &error_lines(&router, &example_tenants()),
        "proxy.max_attempts: must be greater than 0; fix: 1 means no retry",
    );
}

#[test]
fn upstream_keepalive_pool_is_bounded() {
    let router = |pool: &str| {
        example_router().replace(
            "upstream_keepalive_pool = 10000",
            &format!("upstream_keepalive_pool = {pool}"),
        )
    };
    let (_dir, path) = write(&router("512"), &example_tenants());
    assert_eq!(load(&path).unwrap().proxy.upstream_keepalive_pool, 512);
    let (_dir, path) = write(
        &example_router().replace("upstream_keepalive_pool = 10000\n", ""),
        &example_tenants(),
    );
    // The default keeps as many as the router holds client connections.
    let snapshot = load(&path).unwrap();
    assert_eq!(
        snapshot.proxy.upstream_keepalive_pool,
        snapshot.proxy.client.max_connections
    );
    assert_reports(
        &error_lines(&router("100001"), &example_tenants()),
        "proxy.upstream_keepalive_pool: 100001 is not between 1 and 100000",
    );
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
    let errors = problems(&router, &example_tenants());
    for (code, field) in [
        // The check timeout (5s) is longer than its interval (2s).
        ("conflicting_settings", "health.timeout_ms"),
        ("out_of_range", "health.max_ejected_percent"),
        ("invalid_value", "regions[0].sites[1].health.http_path"),
        (
            "invalid_value",
            "regions[0].sites[1].health.http_expect_status",
        ),
        ("out_of_range", "regions[0].sites[0].backends[1].weight"),
        ("invalid_address", "proxy.trusted_proxies[1]"),
        // http_* settings, but the check is not `http`.
        ("conflicting_settings", "regions[1].sites[0].health.check"),
    ] {
        assert_found(&errors, code, field);
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
    assert_found(&rejection(&path), "missing_setting", "geoip.countries");
    std::fs::write(
        &path,
        with_geoip("[geoip]\ndatabase = \"geo.mmdb\"\ncountries = { DE = \"frankfurt\", de = \"dublin\", IE = \"atlantis\" }"),
    )
    .unwrap();
    let errors = rejection(&path);
    assert_found(&errors, "invalid_value", "geoip.countries.de");
    assert_found(&errors, "unknown_site", "geoip.countries.IE");

    // Garbage, missing and non-geo databases are refused.
    for bytes in [b"garbage".to_vec(), asn_database()] {
        std::fs::write(dir.path().join("geo.mmdb"), bytes).unwrap();
        assert_found(&rejection(&path), "invalid_file", "geoip.database");
    }
    std::fs::remove_file(dir.path().join("geo.mmdb")).unwrap();
    assert_found(&rejection(&path), "unreadable_file", "geoip.database");
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
    let errors = problems(&router, &example_tenants());
    // Backends would wait forever for a check that never runs.
    assert_found(
        &errors,
        "conflicting_settings",
        "regions[1].sites[0].health.start_unhealthy",
    );
    assert_found(&errors, "out_of_range", "health.max_ejection_ms");
}

#[test]
fn country_table_is_checked_even_when_the_database_is_unreadable() {
    let router = format!(
        "{}\n[geoip]\ndatabase = \"missing.mmdb\"\ncountries = {{ DE = \"atlantis\" }}\n",
        example_router()
    );
    let errors = problems(&router, &example_tenants());
    assert_found(&errors, "unreadable_file", "geoip.database");
    assert_found(&errors, "unknown_site", "geoip.countries.DE");
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
    let errors = problems(&router, &example_tenants());
    for (code, field) in [
        ("invalid_value", "admin.tokens[0].role"),
        // `Acme` is not lowercase.
        ("invalid_tenant", "admin.tokens[1].tenants[0]"),
        // The same token as admin.tokens[0].
        ("duplicate_entry", "admin.tokens[1].sha256"),
        // Not 64 hexadecimal digits.
        ("invalid_value", "admin.tokens[2].sha256"),
        // Only tenant-admin tokens are scoped to tenants.
        ("conflicting_settings", "admin.tokens[2].tenants"),
        ("out_of_range", "admin.audit_retention_days"),
    ] {
        assert_found(&errors, code, field);
    }
    assert_eq!(errors.len(), 6, "{}", describe(&errors));

    let without_table = example_router().replace("[admin]", "[unused]");
    let errors = problems(&without_table, &example_tenants());
    let line = line_of(&without_table, "[unused]\naudit_log");
    assert_found_at(&errors, "unknown_field", "router.toml", Some(line));

    let snapshot = load(&examples_dir().join("router.toml")).unwrap();
    let admin = snapshot.admin.expect("the example serves the admin API");
    assert_eq!(admin.tokens.len(), 2);
    assert_eq!(admin.tokens[1].role, residency_config::Role::TenantAdmin);
    assert_eq!(admin.tokens[1].tenants[0].as_str(), "acme");
    assert_eq!(admin.audit.path, examples_dir().join("audit.log"));
    assert_eq!(admin.audit.retention.as_secs(), 2196 * 86_400);
}

#[test]
fn a_tokens_file_adds_callers_checked_as_the_config_s_and_reported_in_that_file() {
    let router = example_router().replace("[admin]\n", "[admin]\ntokens_file = \"tokens.toml\"\n");
    let (dir, path) = write(&router, &example_tenants());
    let tokens_file = dir.path().join("tokens.toml");
    assert_found_at(&rejection(&path), "unreadable_file", "tokens.toml", None);

    let auditor = "[[tokens]]\nname = \"soc\"\nrole = \"auditor\"\nsha256 = \"a3ff5b0bcb8c1d9a78e4ddc6d1e5c0f4f80a0b3f6e0d3a4e4c1d1f0b2a3c4d5e\"\n";
    std::fs::write(&tokens_file, auditor).unwrap();
    let admin = load(&path).unwrap().admin.unwrap();
    assert_eq!(admin.tokens.len(), 3, "the config's two and the file's one");
    assert_eq!(admin.tokens[2].name, "soc");
    assert_eq!(admin.tokens[2].role, residency_config::Role::Auditor);
    assert_eq!(admin.tokens_file.as_deref(), Some(tokens_file.as_path()));

    // Shape errors carry the file's own lines.
    let stray = format!("{auditor}scope = \"all\"\n");
    std::fs::write(&tokens_file, &stray).unwrap();
    let line = line_of(&stray, "scope");
    assert_found_at(
        &rejection(&path),
        "unknown_field",
        "tokens.toml",
        Some(line),
    );

    // A caller of the file that repeats one of the config: the same checks, over both lists.
    let repeated = "[[tokens]]\nname = \"platform-ops\"\nrole = \"viewer\"\nsha256 = \"cadaee6d96cfc6f48b78f8783c9493f48be29ff3e90ac85c219f014cb73b1eae\"\n";
    std::fs::write(&tokens_file, repeated).unwrap();
    let errors = rejection(&path);
    assert_found(&errors, "duplicate_name", "tokens[0].name");
    assert_found(&errors, "duplicate_entry", "tokens[0].sha256");
    assert_eq!(errors.len(), 2, "{}", describe(&errors));
    for e in &errors {
        assert!(
            matches!(e, ConfigError::Invalid { file, .. } if file == &tokens_file),
            "reported against the tokens file: {e}"
        );
    }
}

#[test]
fn names_and_replica_lists_are_checked() {
    let router = example_router()
        .replace("name = \"dublin\"", "name = \"Dublin\"")
        .replace(
            "hosts = [\"eu.api.example.com\"]",
            "hosts = [\"https://eu.api.example.com\"]",
        );
    let tenants = r#"{ "tenants": [
        { "id": "acme", "region": "us", "replication": { "regions": ["eu", "eu"], "mode": "active" } },
        { "id": "globex", "region": "eu", "replication": { "regions": [], "mode": "active" } }
    ] }"#;
    let errors = problems(&router, tenants);
    for (code, field) in [
        ("invalid_name", "regions[1].sites[1].name"),
        ("invalid_name", "regions[1].hosts[0]"),
        ("invalid_replication", "tenants[0].replication.regions[1]"),
        ("invalid_replication", "tenants[1].replication.regions"),
    ] {
        assert_found(&errors, code, field);
    }
    assert_eq!(errors.len(), 4, "{}", describe(&errors));
}

/// Every case that checks codes: `every_code_is_produced_by_a_case` runs them all again.
const CASES: &[fn()] = &[
    unknown_fields_are_rejected_with_line_and_column,
    every_schema_problem_is_reported_at_once_with_its_line,
    unknown_fields_in_the_registry_are_rejected,
    every_bad_registry_entry_is_reported_at_once_with_its_line,
    every_problem_is_reported_at_once_with_its_location,
    client_traffic_needs_a_listener,
    source_and_policy_mistakes_are_explained,
    missing_or_broken_registry_is_an_error,
    zero_counts_and_durations_are_rejected,
    health_and_balance_mistakes_are_reported_with_their_site,
    geoip_databases_are_opened_and_checked_at_load,
    start_unhealthy_without_checks_and_absurd_durations_are_rejected,
    country_table_is_checked_even_when_the_database_is_unreadable,
    admin_tokens_are_checked_and_every_problem_reported,
    names_and_replica_lists_are_checked,
];

/// A code in the list that no case produces is either dead or untested: both are bugs.
#[test]
fn every_code_is_produced_by_a_case() {
    MET.with(|met| met.borrow_mut().clear());
    for case in CASES {
        case();
    }
    let met = MET.with(|met| met.borrow().clone());
    let listed: BTreeSet<&str> = ConfigError::CODES.iter().map(|(code, _)| *code).collect();
    let unmet: Vec<&&str> = listed.difference(&met).collect();
    assert!(unmet.is_empty(), "no case produces {unmet:?}");
    let unlisted: Vec<&&str> = met.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "not in ConfigError::CODES: {unlisted:?}"
    );
}

//! `[tls]` and `[regions.sites.tls]`: certificates read and checked at load, with real
//! certificates issued by rcgen for each test.

use std::path::{Path, PathBuf};

use residency_config::testing::Ca;
use residency_config::{load, ConfigError, TlsVersion};

const TENANTS: &str = r#"{ "tenants": [ { "id": "acme", "region": "us" } ] }"#;

/// A one-site config with `listen` lines, `site` lines (inside the site's table) and `tables`.
fn write_config(dir: &Path, listen: &str, site: &str, tables: &str) -> PathBuf {
    let config = format!(
        "[listen]\nhttp = \"127.0.0.1:8080\"\n{listen}\n\
         [tenancy]\nsources = [{{ header = \"x-tenant-id\" }}]\nunknown = \"reject\"\nregistry = \"tenants.json\"\n\
         {tables}\n\
         [[regions]]\nname = \"us\"\n[[regions.sites]]\nname = \"virginia\"\nlat = 38.9\nlon = -77.4\nbackends = [\"127.0.0.1:9101\"]\n{site}\n"
    );
    std::fs::write(dir.join("tenants.json"), TENANTS).unwrap();
    let path = dir.join("router.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn errors(path: &Path) -> String {
    load(path)
        .expect_err("expected the config to be rejected")
        .to_string()
}

/// Every problem `load` reports for the config at `path`, as (code, field).
fn found(path: &Path) -> Vec<(&'static str, String)> {
    let errors = load(path)
        .expect_err("expected the config to be rejected")
        .0;
    errors
        .iter()
        .map(|e: &ConfigError| (e.code(), e.field().unwrap_or_default().to_owned()))
        .collect()
}

#[track_caller]
fn assert_found(found: &[(&str, String)], code: &str, field: &str) {
    assert!(
        found.iter().any(|(c, f)| *c == code && f == field),
        "no {code} at {field} in {found:#?}"
    );
}

#[test]
fn certificates_are_chosen_by_exact_name_then_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    ca.issue(&["*.app.example.com", "app.example.com"])
        .write(dir.path(), "apps");
    ca.issue(&["acme.app.example.com"])
        .write(dir.path(), "acme");
    ca.issue(&["fallback.example.com"])
        .write(dir.path(), "fallback");
    let tables = "[tls]\n\
        [[tls.certificates]]\nname = \"apps\"\ncert = \"apps.pem\"\nkey = \"apps.key\"\n\
        [[tls.certificates]]\nname = \"acme\"\ncert = \"acme.pem\"\nkey = \"acme.key\"\n\
        [[tls.certificates]]\nname = \"fallback\"\ncert = \"fallback.pem\"\nkey = \"fallback.key\"\ndefault = true\n";
    let path = write_config(dir.path(), "https = \"127.0.0.1:8443\"", "", tables);
    let snapshot = load(&path).unwrap();
    let tls = &snapshot.tls;
    assert_eq!(
        tls.min_version,
        TlsVersion::Tls13,
        "TLS 1.3 only by default"
    );
    assert!(tls.h2);
    let set = &tls.certificates;
    let chosen = |name: Option<&str>| set.select(name).unwrap().name.as_str();
    assert_eq!(
        chosen(Some("acme.app.example.com")),
        "acme",
        "exact beats wildcard"
    );
    assert_eq!(
        chosen(Some("ACME.App.Example.COM.")),
        "acme",
        "case and root dot"
    );
    assert_eq!(chosen(Some("globex.app.example.com")), "apps");
    assert_eq!(chosen(Some("app.example.com")), "apps");
    // A wildcard covers exactly one label.
    assert_eq!(chosen(Some("a.b.app.example.com")), "fallback");
    assert_eq!(chosen(Some("unknown.example.org")), "fallback");
    assert_eq!(chosen(None), "fallback", "no SNI gets the default");
    assert!(set.same_certificate(Some("acme.app.example.com"), Some("acme.app.example.com")));
    assert!(set.same_certificate(Some("x.app.example.com"), Some("y.app.example.com")));
    assert!(!set.same_certificate(Some("acme.app.example.com"), Some("x.app.example.com")));
    assert!(set.same_certificate(None, Some("other.example.org")));
    // The file watcher sees every certificate and key.
    assert_eq!(tls.files().count(), 6);
}

#[test]
fn a_reload_may_not_put_an_invalid_certificate_where_a_valid_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let apps = ["*.app.example.com"];
    ca.issue(&apps).write(dir.path(), "apps");
    ca.issue_expired(&apps).write(dir.path(), "apps-expired");
    ca.issue_not_yet_valid(&apps)
        .write(dir.path(), "apps-future");
    ca.issue(&["fallback.example.com"])
        .write(dir.path(), "fallback");
    ca.issue_expired(&["other.example.com"])
        .write(dir.path(), "other-expired");
    ca.issue_expired(&["new.example.com"])
        .write(dir.path(), "new-expired");
    ca.issue(&["localhost"]).write(dir.path(), "metrics");
    ca.issue_expired(&["localhost"])
        .write(dir.path(), "metrics-expired");
    // `listen.https` certificates as (name, file, default), and the metrics listener's file.
    type Entry<'a> = (&'a str, &'a str, bool);
    let config = |https: &[Entry], metrics: &str| {
        let mut tables =
            format!("[tls]\n[tls.metrics]\ncert = \"{metrics}.pem\"\nkey = \"{metrics}.key\"\n");
        for (name, file, default) in https {
            tables += &format!("[[tls.certificates]]\nname = \"{name}\"\ncert = \"{file}.pem\"\nkey = \"{file}.key\"\ndefault = {default}\n");
        }
        let listen = "https = \"127.0.0.1:8443\"\nmetrics = \"127.0.0.1:9100\"";
        load(&write_config(dir.path(), listen, "", &tables)).unwrap()
    };
    let running = config(
        &[("apps", "apps", false), ("fallback", "fallback", true)],
        "metrics",
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let fallback = ("fallback", "fallback", true);
    let cases: [(&[Entry], &str, Option<&str>); 7] = [
        (&[("apps", "apps", false), fallback], "metrics", None),
        // Expired, under its own name or a new one for the same DNS names.
        (
            &[("apps", "apps-expired", false), fallback],
            "metrics",
            Some("apps-expired.pem expired on"),
        ),
        (
            &[("restored", "apps-expired", false), fallback],
            "metrics",
            Some("would replace `apps`"),
        ),
        (
            &[("apps", "apps-future", false), fallback],
            "metrics",
            Some("is not valid before"),
        ),
        // An expired default for other names still replaces the valid default.
        (
            &[("apps", "apps", false), ("other", "other-expired", true)],
            "metrics",
            Some("would replace `fallback`"),
        ),
        // The metrics listener's certificate is judged against the metrics listener's.
        (
            &[("apps", "apps", false), fallback],
            "metrics-expired",
            Some("certificate `metrics`"),
        ),
        // An invalid certificate for clients no valid one served is not this check's business.
        (
            &[
                ("apps", "apps", false),
                fallback,
                ("new", "new-expired", false),
            ],
            "metrics",
            None,
        ),
    ];
    for (https, metrics, refused) in cases {
        let lines = config(https, metrics)
            .tls
            .invalid_replacements(&running.tls, now);
        match refused {
            None => assert!(lines.is_empty(), "{https:?}: {lines:?}"),
            Some(text) => assert!(
                lines.len() == 1 && lines[0].contains(text),
                "{https:?}: {lines:?}"
            ),
        }
    }
}

#[test]
fn without_a_default_the_first_certificate_is_served_to_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    ca.issue(&["one.example.com"]).write(dir.path(), "one");
    ca.issue(&["two.example.com"]).write(dir.path(), "two");
    let tables = "[tls]\nmin_version = \"1.2\"\nh2 = false\n\
        [[tls.certificates]]\nname = \"one\"\ncert = \"one.pem\"\nkey = \"one.key\"\n\
        [[tls.certificates]]\nname = \"two\"\ncert = \"two.pem\"\nkey = \"two.key\"\n";
    let path = write_config(dir.path(), "https = \"127.0.0.1:8443\"", "", tables);
    let snapshot = load(&path).unwrap();
    assert_eq!(snapshot.tls.min_version, TlsVersion::Tls12);
    assert!(!snapshot.tls.h2);
    let set = &snapshot.tls.certificates;
    assert_eq!(set.select(Some("three.example.com")).unwrap().name, "one");
    assert_eq!(set.select(Some("two.example.com")).unwrap().name, "two");
}

#[test]
fn every_tls_mistake_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let good = ca.issue(&["good.example.com"]);
    good.write(dir.path(), "good");
    ca.issue(&["good.example.com"])
        .write(dir.path(), "same-name");
    let other = ca.issue(&["other.example.com"]);
    // A certificate with somebody else's key.
    std::fs::write(dir.path().join("mismatch.pem"), &good.cert_pem).unwrap();
    std::fs::write(dir.path().join("mismatch.key"), &other.key_pem).unwrap();
    let expired = ca.issue_expired(&["old.example.com"]);
    expired.write(dir.path(), "expired");
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
    let tables = "[tls]\nmin_version = \"1.1\"\n\
        [[tls.certificates]]\nname = \"good\"\ncert = \"good.pem\"\nkey = \"good.key\"\ndefault = true\n\
        [[tls.certificates]]\nname = \"same-name\"\ncert = \"same-name.pem\"\nkey = \"same-name.key\"\ndefault = true\n\
        [[tls.certificates]]\nname = \"mismatch\"\ncert = \"mismatch.pem\"\nkey = \"mismatch.key\"\n\
        [[tls.certificates]]\nname = \"expired\"\ncert = \"expired.pem\"\nkey = \"expired.key\"\n\
        [[tls.certificates]]\nname = \"garbage\"\ncert = \"garbage.pem\"\nkey = \"good.key\"\n\
        [[tls.certificates]]\nname = \"missing\"\ncert = \"missing.pem\"\nkey = \"missing.key\"\n\
        [tls.admin]\ncert = \"good.pem\"\nkey = \"good.key\"\n";
    let site = "[regions.sites.tls]\nclient_cert = \"good.pem\"\n";
    let path = write_config(dir.path(), "https = \"127.0.0.1:8443\"", site, tables);
    let found = found(&path);
    for (code, field) in [
        ("invalid_value", "tls.min_version"),
        // `good` is already the default certificate.
        ("conflicting_settings", "tls.certificates[1].default"),
        // The key does not belong to the certificate.
        ("invalid_file", "tls.certificates[2]"),
        // The file holds no certificate.
        ("invalid_file", "tls.certificates[4]"),
        ("unreadable_file", "tls.certificates[5]"),
        // `good.example.com` is a name of both `good` and `same-name`.
        ("duplicate_name", "tls.certificates"),
        // [tls.admin] without listen.admin.
        ("missing_setting", "tls.admin"),
        ("missing_setting", "regions[0].sites[0].tls.sni"),
        // `client_cert` without `client_key`.
        ("missing_setting", "regions[0].sites[0].tls"),
    ] {
        assert_found(&found, code, field);
    }
    // The fix names the way out for tests, and only for tests.
    let report = errors(&path);
    assert!(report.contains("insecure_skip_verify"), "{report}");
    // An expired certificate is served (and alerted on), never a reason to refuse a reload:
    // that would fail every reload and restart from the day it expires.
    assert!(
        !found
            .iter()
            .any(|(_, f)| f.starts_with("tls.certificates[3]")),
        "{found:#?}"
    );
}

#[test]
fn https_and_certificates_come_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "https = \"127.0.0.1:8443\"", "", "");
    // No [tls] table.
    assert_found(&found(&path), "missing_setting", "listen.https");

    let ca = Ca::new("test CA");
    ca.issue(&["a.example.com"]).write(dir.path(), "a");
    let tables = "[tls]\n[[tls.certificates]]\nname = \"a\"\ncert = \"a.pem\"\nkey = \"a.key\"\n";
    let path = write_config(dir.path(), "", "", tables);
    // Certificates, but no listen.https.
    assert_found(&found(&path), "missing_setting", "tls.certificates");
}

#[test]
fn upstream_tls_verifies_by_default_and_skips_only_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend CA");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    ca.issue(&["router.internal"]).write(dir.path(), "client");
    let site = "[regions.sites.tls]\nsni = \"virginia.internal\"\nca = \"ca.pem\"\n\
        client_cert = \"client.pem\"\nclient_key = \"client.key\"\nh2 = true\n";
    let snapshot = load(&write_config(dir.path(), "", site, "")).unwrap();
    let tls = snapshot.sites[0].tls.as_ref().unwrap();
    assert_eq!(tls.sni, "virginia.internal");
    assert!(tls.verify && tls.h2);
    assert_eq!(tls.ca.as_ref().unwrap().len(), 1);
    assert_eq!(tls.client.as_ref().unwrap().chain.len(), 1);
    // The file watcher sees the CA and the client identity too.
    assert_eq!(snapshot.tls_files().count(), 3);
    // The key never shows in logs.
    assert!(!format!("{tls:?}").contains(&format!("{:?}", tls.client.as_ref().unwrap().key)));

    let site = "[regions.sites.tls]\ninsecure_skip_verify = true\n";
    let snapshot = load(&write_config(dir.path(), "", site, "")).unwrap();
    let tls = snapshot.sites[0].tls.as_ref().unwrap();
    assert!(!tls.verify && tls.sni.is_empty() && tls.ca.is_none());

    let site = "[regions.sites.tls]\nsni = \"\"\n";
    let found = found(&write_config(dir.path(), "", site, ""));
    assert_found(&found, "missing_setting", "regions[0].sites[0].tls.sni");
}

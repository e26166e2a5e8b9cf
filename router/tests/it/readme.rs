//! The README's admin API examples, run as written against a real router.

use std::path::Path;

use crate::common::{Cluster, Options, AUDITOR, OPERATOR, TENANT_ADMIN};

/// The `sh` blocks between the README's admin example markers.
fn admin_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("<!-- admin examples start")
        .expect("start marker");
    let end = readme
        .find("<!-- admin examples end -->")
        .expect("end marker");
    readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_admin_examples_in_the_readme_work_as_written() {
    let cluster = Cluster::start_with(Options {
        admin: true,
        ..Options::default()
    })
    .await;
    let blocks = admin_examples();
    assert!(blocks.len() >= 3, "{blocks:?}");
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_residency-router"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in &blocks {
        // Blocking, off the runtime that serves the site backends.
        let mut command = std::process::Command::new("bash");
        command
            .arg("-c")
            .arg(format!("set -euo pipefail\n{block}"))
            .current_dir(cluster.dir.path())
            .env("PATH", &path)
            .env("ADMIN", format!("http://{}", cluster.admin.unwrap()))
            .env("ACME_TOKEN", TENANT_ADMIN)
            .env("OPERATOR_TOKEN", OPERATOR)
            .env("AUDITOR_TOKEN", AUDITOR)
            .env("AUDIT_LOG", cluster.dir.path().join("audit/audit.log"));
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "README block failed:\n{block}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The examples did what they say: acme lives in the EU, with a read replica in the US.
    assert_eq!(cluster.region_of("acme").await, "eu");
    let tenants = std::fs::read_to_string(cluster.dir.path().join("tenants.json")).unwrap();
    let registry: serde_json::Value = serde_json::from_str(&tenants).unwrap();
    let acme = registry["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "acme")
        .unwrap();
    assert_eq!(acme["region"], "eu", "{tenants}");
    let replication = &acme["replication"];
    assert_eq!(
        (&replication["regions"], &replication["mode"]),
        (
            &serde_json::json!(["us"]),
            &serde_json::json!("read-replica")
        ),
        "{tenants}"
    );
    // The README computes the expiry from today (90 days on), so the example never ages.
    let expiry = replication["expires_at"].as_str().unwrap();
    let ends = time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let in_days = (ends - time::OffsetDateTime::now_utc()).whole_days();
    assert!((88..=90).contains(&in_days), "{expiry}");
}

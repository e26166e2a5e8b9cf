//! `[geoip]`: the database, opened at load, and its country -> site table.

use std::path::Path;
use std::time::Duration;

use regions::Topology;

use crate::error::code;
use crate::file::GeoIpFile;
use crate::snapshot::GeoIpSettings;

use super::{millis, relative_to, Problems};

pub(super) fn geoip(
    file: &GeoIpFile,
    config_path: &Path,
    topology: &Topology,
    open: Option<&std::sync::Arc<geoip::LiveDatabase>>,
    problems: &mut Problems<'_>,
) -> Option<GeoIpSettings> {
    let path = relative_to(config_path, &file.database);
    let database = geoip::LiveDatabase::open_reusing(&path, open)
        .map_err(|e| {
            let code = match e {
                geoip::GeoIpError::Read { .. } => code::UNREADABLE_FILE,
                _ => code::INVALID_FILE,
            };
            problems.add(
                code,
                "geoip.database",
                e.to_string(),
                "point it at a MaxMind City or Country database (.mmdb), or remove [geoip]",
            )
        })
        .ok();
    // The table is checked even when the database is unreadable: every problem at once.
    let mut countries = std::collections::HashMap::new();
    for (code, site) in &file.countries {
        let at = format!("geoip.countries.{code}");
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.add(
                code::INVALID_VALUE,
                &at,
                format!("`{code}` is not an ISO 3166-1 alpha-2 code"),
                "write two capital letters, e.g. `DE`",
            );
            continue;
        }
        match topology.site_by_name(site) {
            Some(id) => {
                countries.insert(code.clone(), id);
            }
            None => problems.add(
                code::UNKNOWN_SITE,
                &at,
                format!("site `{site}` is not defined"),
                "name a site from [[regions.sites]]",
            ),
        }
    }
    let reload_check = millis(
        file.reload_check_ms,
        Duration::from_secs(5),
        "geoip.reload_check_ms",
        problems,
    );
    let database = database?;
    if database.current().kind() == geoip::Kind::Country && countries.is_empty() {
        problems.add(
            code::MISSING_SETTING,
            "geoip.countries",
            "a Country database needs a country -> site table",
            "add e.g. `countries = { DE = \"frankfurt\", IE = \"dublin\" }`",
        );
    }
    Some(GeoIpSettings {
        database,
        countries,
        reload_check,
    })
}

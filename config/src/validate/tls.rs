//! `[tls]` (the client, admin and metrics listeners' certificates) and each site's upstream
//! `tls`: every file read and checked at load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::code;
use crate::file::{ConfigFile, ListenerTlsFile, UpstreamTlsFile};
use crate::tls::{self, CertificateSet, ListenerTls, TlsSettings, TlsVersion, UpstreamTls};

use super::{is_hostname, is_name, relative_to, Problems};

/// Adds a TLS file problem at `at`; `None` leaves the item out.
fn tls_checked<T>(
    result: Result<T, tls::TlsProblem>,
    at: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    result
        .map_err(|e| problems.add(e.code, at, e.problem, e.fix))
        .ok()
}

pub(super) fn tls_settings(
    file: &ConfigFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> TlsSettings {
    let default = TlsSettings::default();
    let Some(tls) = &file.tls else {
        if file.listen.https.is_some() {
            problems.add(
                code::MISSING_SETTING,
                "listen.https",
                "listen.https is set but there is no [tls] table with certificates",
                "add [[tls.certificates]] with `name`, `cert` and `key`, or remove listen.https",
            );
        }
        return default;
    };
    let min_version = match tls.min_version.as_deref() {
        None | Some("1.3") => TlsVersion::Tls13,
        Some("1.2") => TlsVersion::Tls12,
        Some(other) => {
            problems.add(
                code::INVALID_VALUE,
                "tls.min_version",
                format!("`{other}` is not a TLS version the router speaks"),
                "use \"1.3\" (the default) or, only for clients that cannot do 1.3, \"1.2\"",
            );
            TlsVersion::Tls13
        }
    };
    match (file.listen.https.is_some(), tls.certificates.is_empty()) {
        (true, true) => problems.add(
            code::MISSING_SETTING,
            "tls.certificates",
            "listen.https is set but no certificate is configured",
            "add [[tls.certificates]] with `name`, `cert` and `key`",
        ),
        (false, false) => problems.add(
            code::MISSING_SETTING,
            "tls.certificates",
            "certificates are configured but listen.https is not set",
            "set listen.https, e.g. `https = \"0.0.0.0:8443\"`, or remove the certificates",
        ),
        _ => {}
    }
    let mut certificates = Vec::new();
    let mut default_index = None;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, certificate) in tls.certificates.iter().enumerate() {
        let at = format!("tls.certificates[{i}]");
        if !is_name(&certificate.name) || ["admin", "metrics"].contains(&certificate.name.as_str())
        {
            problems.add(
                code::INVALID_NAME,
                format!("{at}.name"),
                format!("`{}` is not a usable certificate name", certificate.name),
                "use 1 to 32 of [a-z0-9-], other than `admin` and `metrics` (the listeners' own)",
            );
        }
        if let Some(first) = names.insert(&certificate.name, i) {
            problems.add(
                code::DUPLICATE_NAME,
                format!("{at}.name"),
                format!(
                    "`{}` is also the name of tls.certificates[{first}]",
                    certificate.name
                ),
                "give every certificate its own name",
            );
        }
        if certificate.default == Some(true) {
            if let Some(first) = default_index.replace(certificate.name.clone()) {
                problems.add(
                    code::CONFLICTING_SETTINGS,
                    format!("{at}.default"),
                    format!("`{first}` is already the default certificate"),
                    "mark at most one certificate `default = true`",
                );
            }
        }
        let loaded = tls::server_certificate(
            &certificate.name,
            relative_to(config_path, &certificate.cert),
            relative_to(config_path, &certificate.key),
        );
        if let Some(loaded) = tls_checked(loaded, &at, problems) {
            certificates.push((certificate.default == Some(true), loaded));
        }
    }
    let default_position = certificates.iter().position(|(d, _)| *d).unwrap_or(0);
    let certificates = certificates.into_iter().map(|(_, c)| c).collect();
    let certificates = match CertificateSet::new(certificates, default_position) {
        Ok(set) => set,
        Err((name, first, second)) => {
            problems.add(
                code::DUPLICATE_NAME,
                "tls.certificates",
                format!("`{name}` is a name of both certificate `{first}` and `{second}`"),
                "serve each name from one certificate: remove it from one of them",
            );
            CertificateSet::default()
        }
    };
    let mut listener = |table: &Option<ListenerTlsFile>, name: &str, listen: &Option<String>| {
        let table = table.as_ref()?;
        let at = format!("tls.{name}");
        if listen.is_none() {
            problems.add(
                code::MISSING_SETTING,
                &at,
                format!("[tls.{name}] is set but listen.{name} is not"),
                format!("set listen.{name} or remove [tls.{name}]"),
            );
        }
        let certificate = tls::server_certificate(
            name,
            relative_to(config_path, &table.cert),
            relative_to(config_path, &table.key),
        );
        let certificate = tls_checked(certificate, &at, problems)?;
        let client_ca_path = table
            .client_ca
            .as_ref()
            .map(|p| relative_to(config_path, p));
        let client_verifier = match &client_ca_path {
            Some(path) => Some(tls_checked(
                tls::client_verifier(path),
                &format!("{at}.client_ca"),
                problems,
            )?),
            None => None,
        };
        Some(ListenerTls {
            certificate: Arc::new(certificate),
            client_verifier,
            client_ca_path,
        })
    };
    let admin = listener(&tls.admin, "admin", &file.listen.admin);
    let metrics = listener(&tls.metrics, "metrics", &file.listen.metrics);
    TlsSettings {
        min_version,
        h2: tls.h2.unwrap_or(default.h2),
        certificates: Arc::new(certificates),
        admin,
        metrics,
    }
}

pub(super) fn upstream_tls(
    file: &UpstreamTlsFile,
    config_path: &Path,
    at: &str,
    problems: &mut Problems<'_>,
) -> Option<UpstreamTls> {
    let insecure = file.insecure_skip_verify == Some(true);
    let sni = file.sni.clone().unwrap_or_default();
    // Pingora turns verification off for an empty SNI: that must be a decision, never a typo.
    if sni.is_empty() && !insecure {
        problems.add(
            code::MISSING_SETTING,
            format!("{at}.sni"),
            "no server name to verify the backends' certificates against",
            "set `sni` to the name on the backends' certificates; only for testing, \
             `insecure_skip_verify = true` turns verification off",
        );
    } else if !sni.is_empty() && !is_hostname(&sni) && sni.parse::<std::net::IpAddr>().is_err() {
        problems.add(
            code::INVALID_NAME,
            format!("{at}.sni"),
            format!("`{sni}` is not a host name"),
            "use the DNS name (or IP address) on the backends' certificates",
        );
    }
    let [ca_path, cert_path, key_path] = [&file.ca, &file.client_cert, &file.client_key]
        .map(|path| path.as_ref().map(|p| relative_to(config_path, p)));
    let files: Vec<_> = [&ca_path, &cert_path, &key_path]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let ca = match &ca_path {
        Some(path) => {
            let at = format!("{at}.ca");
            let certificates = tls_checked(tls::certificates(path), &at, problems)?;
            let der = certificates.iter().map(|c| c.to_vec()).collect();
            // Pingora makes trust anchors of them on every connection: check that they can be.
            tls_checked(tls::trust_anchors(certificates, path), &at, problems)?;
            Some(der)
        }
        None => None,
    };
    let client = match (&cert_path, &key_path) {
        (Some(cert), Some(key)) => Some(tls_checked(
            tls::client_identity(cert, key),
            &format!("{at}.client_cert"),
            problems,
        )?),
        (None, None) => None,
        _ => {
            problems.add(
                code::MISSING_SETTING,
                at,
                "a client certificate needs both `client_cert` and `client_key`",
                "set both, or neither",
            );
            return None;
        }
    };
    Some(UpstreamTls {
        sni,
        verify: !insecure,
        ca,
        client,
        h2: file.h2.unwrap_or(false),
        files,
    })
}

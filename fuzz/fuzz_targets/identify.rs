//! Tenant identification on arbitrary bytes: it never panics, and whenever a lenient
//! backend's reading of the path names a tenant, the router names that tenant or refuses
//! (the property `regions`' unit tests check on generated paths). Run with
//! `cargo +nightly fuzz run identify` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regions::{HeaderValues, HostPattern, PathPattern, TenantId, TenantIdentifier, TenantSource};

fuzz_target!(|data: &[u8]| {
    // First byte: which header case; the rest split at the first newline into path and Host.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (path, host) = text.split_once('\n').unwrap_or((&text, ""));
    let path = format!("/{}", path.trim_start_matches('/'));
    let identifier = TenantIdentifier::new(vec![
        TenantSource::header("x-tenant-id").unwrap(),
        TenantSource::Host(HostPattern::parse("{tenant}.app.example.com").unwrap()),
        TenantSource::Path(PathPattern::parse("/t/{tenant}/", false).unwrap()),
    ]);
    let header: &[u8] = match selector % 3 {
        0 => b"acme",
        1 => b"globex",
        _ => b"",
    };
    let host = (!host.is_empty() && regions::is_plain_authority(host))
        .then(|| regions::normalize_host(host));
    let result = identifier.identify(host, None, &path, |_: &str| {
        if header.is_empty() {
            HeaderValues::Absent
        } else {
            HeaderValues::One(header)
        }
    });
    let backend_reads = regions::lenient_path(&path).and_then(|lenient| {
        let rest = lenient.get(..3)?.eq_ignore_ascii_case("/t/").then(|| &lenient[3..])?;
        TenantId::parse(rest.split('/').next()?.as_bytes()).ok()
    });
    if let (Some(backend), Ok(identified)) = (backend_reads, result) {
        assert_eq!(identified.tenant.map(|(id, _)| id), Some(backend), "{path}");
    }
});

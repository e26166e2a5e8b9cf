//! `[tenancy]`: where the tenant is read from, and what happens to tenants the registry
//! does not know.

use regions::{
    HostPattern, PathPattern, TenantIdentifier, TenantSource, Topology, UnknownTenantPolicy,
};

use crate::error::code;
use crate::file::{SourceFile, UnknownFile};

use super::Problems;

pub(super) fn identifier(
    sources: &[SourceFile],
    topology: &Topology,
    problems: &mut Problems<'_>,
) -> TenantIdentifier {
    if sources.is_empty() {
        problems.add(
            code::MISSING_SETTING,
            "tenancy.sources",
            "no tenant source is configured",
            "add at least one of { host = \"{tenant}.app.example.com\" }, { header = \"x-tenant-id\" }, { path = \"/t/{tenant}/\" }",
        );
    }
    let mut parsed = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let at = format!("tenancy.sources[{i}]");
        let kinds = [&source.host, &source.header, &source.path]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if kinds != 1 {
            // None is a source left out; two or more are sources that cannot be one.
            let code = match kinds {
                0 => code::MISSING_SETTING,
                _ => code::CONFLICTING_SETTINGS,
            };
            problems.add(
                code,
                at,
                format!(
                    "a source must have exactly one of `host`, `header` or `path`, found {kinds}"
                ),
                "split it into one source per table entry",
            );
            continue;
        }
        if source.strip.is_some() && source.path.is_none() {
            problems.add(
                code::CONFLICTING_SETTINGS,
                format!("{at}.strip"),
                "`strip` only applies to a path source",
                "remove `strip`, or use it with `path`",
            );
        }
        let result = if let Some(pattern) = &source.host {
            HostPattern::parse(pattern).map(|p| {
                for (_, region) in topology.regions() {
                    for host in &region.hosts {
                        if p.extract(host).is_some() {
                            problems.add(
                                code::CONFLICTING_SETTINGS,
                                format!("{at}.host"),
                                format!("pattern `{pattern}` matches region host `{host}` of region `{}`", region.name),
                                "a region host is a region hint, never a tenant: use a tenant pattern under another domain, e.g. `{tenant}.app.example.com`",
                            );
                        }
                    }
                }
                TenantSource::Host(p)
            })
        } else if let Some(name) = &source.header {
            TenantSource::header(name)
        } else {
            let pattern = source.path.as_deref().unwrap_or_default();
            PathPattern::parse(pattern, source.strip.unwrap_or(false)).map(TenantSource::Path)
        };
        match result {
            Ok(source) if parsed.contains(&source) => problems.add(
                code::DUPLICATE_ENTRY,
                at,
                "the same tenant source is listed twice",
                "remove the duplicate",
            ),
            Ok(source) => parsed.push(source),
            Err(e) => problems.add(
                code::INVALID_VALUE,
                at,
                e.to_string(),
                "see the example in config/examples/router.toml",
            ),
        }
    }
    TenantIdentifier::new(parsed)
}

pub(super) fn unknown_policy(
    unknown: &UnknownFile,
    topology: &Topology,
    problems: &mut Problems<'_>,
) -> UnknownTenantPolicy {
    match unknown {
        UnknownFile::Keyword(k) if k == "reject" => UnknownTenantPolicy::Reject,
        UnknownFile::Keyword(k) => {
            problems.add(
                code::INVALID_VALUE,
                "tenancy.unknown",
                format!("`{k}` is not a policy"),
                "write `unknown = \"reject\"` or `unknown = { region = \"NAME\" }`",
            );
            UnknownTenantPolicy::Reject
        }
        UnknownFile::Fallback { region } => match topology.region_by_name(region) {
            Some(id) => UnknownTenantPolicy::Fallback(id),
            None => {
                problems.add(
                    code::UNKNOWN_REGION,
                    "tenancy.unknown.region",
                    format!("region `{region}` is not defined"),
                    format!("use one of: {}", region_list(topology)),
                );
                UnknownTenantPolicy::Reject
            }
        },
    }
}

fn region_list(topology: &Topology) -> String {
    let names: Vec<&str> = topology.regions().map(|(_, r)| r.name.as_str()).collect();
    names.join(", ")
}

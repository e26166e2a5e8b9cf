//! `[admin]`: the admin API's tokens and audit log.

use std::path::Path;
use std::time::Duration;

use crate::error::code;
use crate::file::{ConfigFile, TokenFile, TokensFile};
use crate::snapshot::{AdminSettings, AdminToken, AuditSettings, Role};
use crate::tenant::tenant_id;

use super::{is_name, positive, relative_to, Problems};

/// Six years, the retention auditors of the seed customers ask for.
const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 6 * 366;

pub(super) fn admin_settings(
    file: &ConfigFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> Option<AdminSettings> {
    let admin = match (&file.listen.admin, &file.admin) {
        (None, None) => return None,
        (Some(_), None) => {
            problems.add(
                code::MISSING_SETTING,
                "admin",
                "listen.admin is set but there is no [admin] table",
                "add [admin] with `audit_log = \"audit.log\"` and [[admin.tokens]], or remove listen.admin",
            );
            return None;
        }
        (None, Some(_)) => {
            problems.add(
                code::MISSING_SETTING,
                "listen.admin",
                "[admin] is configured but the admin API has no address",
                "set listen.admin, e.g. `admin = \"127.0.0.1:9901\"`",
            );
            return None;
        }
        (Some(_), Some(admin)) => admin,
    };
    let mut tokens = Vec::new();
    check_tokens(&admin.tokens, "admin.tokens", &mut tokens, problems);
    // The file's problems are reported against it: its shape errors with their lines, its
    // tokens at `tokens[i]`.
    let tokens_file = admin.tokens_file.as_ref().map(|name| {
        let path = relative_to(config_path, name);
        let file = super::read(&path)
            .map_err(|e| vec![e])
            .and_then(|text| crate::schema::from_toml::<TokensFile>(&path, &text));
        match file {
            Ok(file) => {
                let mut in_file = Problems {
                    file: &path,
                    errors: &mut *problems.errors,
                };
                check_tokens(&file.tokens, "tokens", &mut tokens, &mut in_file);
            }
            Err(errors) => problems.errors.extend(errors),
        }
        path
    });
    let tokens = tokens.into_iter().map(|t| t.token).collect();
    let max_file_bytes = positive(
        admin.audit_max_file_bytes,
        64 << 20,
        "admin.audit_max_file_bytes",
        "use a size in bytes of at least 65536, e.g. 67108864",
        problems,
    );
    if max_file_bytes < 65536 {
        problems.add(
            code::OUT_OF_RANGE,
            "admin.audit_max_file_bytes",
            format!("{max_file_bytes} bytes would rotate every few entries"),
            "use a size in bytes of at least 65536, e.g. 67108864",
        );
    }
    let retention_days = positive(
        admin.audit_retention_days,
        DEFAULT_AUDIT_RETENTION_DAYS,
        "admin.audit_retention_days",
        "use a number of days, e.g. 2196 (six years)",
        problems,
    );
    let max_body_bytes = positive(
        admin.max_body_bytes,
        64 << 10,
        "admin.max_body_bytes",
        "use a size in bytes, e.g. 65536",
        problems,
    );
    Some(AdminSettings {
        tokens,
        tokens_file,
        audit: AuditSettings {
            path: relative_to(config_path, &admin.audit_log),
            max_file_bytes,
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
        },
        max_body_bytes,
    })
}

/// A token as checked so far, with where it was written, for messages about a later one.
struct Checked {
    token: AdminToken,
    place: String,
}

/// Checks the tokens listed at `place` (`admin.tokens`, or the tokens file's) against each
/// other and against those checked before: names and tokens are unique over both.
fn check_tokens(
    listed: &[TokenFile],
    place: &str,
    tokens: &mut Vec<Checked>,
    problems: &mut Problems<'_>,
) {
    for (i, token) in listed.iter().enumerate() {
        let at = |field: &str| format!("{place}[{i}].{field}");
        if !is_name(&token.name) {
            problems.add(
                code::INVALID_NAME,
                at("name"),
                format!("`{}` is not a usable name", token.name),
                "use 1 to 32 characters of a-z, 0-9 and '-' (it is written to the audit log)",
            );
        } else if let Some(j) = tokens.iter().position(|t| t.token.name == token.name) {
            problems.add(
                code::DUPLICATE_NAME,
                at("name"),
                format!(
                    "`{}` is already the name of {}",
                    token.name, tokens[j].place
                ),
                "give every token its own name",
            );
        }
        let role = match Role::ALL.into_iter().find(|r| r.as_str() == token.role) {
            Some(role) => role,
            None => {
                problems.add(
                    code::INVALID_VALUE,
                    at("role"),
                    format!("unknown role `{}`", token.role),
                    "use one of: operator, tenant-admin, auditor, viewer",
                );
                Role::Viewer
            }
        };
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(&token.sha256, &mut sha256).is_err() {
            problems.add(
                code::INVALID_VALUE,
                at("sha256"),
                "not 64 hexadecimal digits",
                "store the SHA-256 of the token: `residency-router token hash` prints it",
            );
        } else if let Some(j) = tokens.iter().position(|t| t.token.sha256 == sha256) {
            problems.add(
                code::DUPLICATE_ENTRY,
                at("sha256"),
                format!("the same token as {}", tokens[j].place),
                "give every caller its own token",
            );
        }
        let mut tenants = Vec::new();
        match (role, &token.tenants) {
            (Role::TenantAdmin, None) => problems.add(
                code::MISSING_SETTING,
                at("tenants"),
                "a tenant-admin token names no tenants",
                "list the tenants it manages, e.g. `tenants = [\"acme\"]`",
            ),
            (Role::TenantAdmin, Some(list)) => {
                if list.is_empty() {
                    problems.add(
                        code::MISSING_SETTING,
                        at("tenants"),
                        "a tenant-admin token names no tenants",
                        "list the tenants it manages, e.g. `tenants = [\"acme\"]`",
                    );
                }
                for (j, id) in list.iter().enumerate() {
                    match tenant_id(id) {
                        Ok(id) => tenants.push(id),
                        Err(e) => problems.add(
                            e.code(),
                            format!("{}[{j}]", at("tenants")),
                            e.to_string(),
                            e.fix(),
                        ),
                    }
                }
            }
            (_, Some(_)) => problems.add(
                code::CONFLICTING_SETTINGS,
                at("tenants"),
                format!(
                    "only tenant-admin tokens are scoped to tenants, this one is `{}`",
                    role.as_str()
                ),
                "remove `tenants`, or make the role tenant-admin",
            ),
            (_, None) => {}
        }
        tokens.push(Checked {
            token: AdminToken {
                name: token.name.clone(),
                role,
                sha256,
                tenants,
            },
            place: format!("{place}[{i}]"),
        });
    }
}

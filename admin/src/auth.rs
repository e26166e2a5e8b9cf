//! Bearer tokens and what each role may do.

use regions::TenantId;
use residency_config::{AdminToken, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Everything the admin API does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListTenants,
    ReadTenant,
    /// Change an existing tenant's region or replication.
    ChangeTenant,
    CreateTenant,
    DeleteTenant,
    Explain,
    ReadAudit,
    Export,
    /// `GET /v1/fleet`.
    ReadFleet,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::ListTenants,
        Action::ReadTenant,
        Action::ChangeTenant,
        Action::CreateTenant,
        Action::DeleteTenant,
        Action::Explain,
        Action::ReadAudit,
        Action::Export,
        Action::ReadFleet,
    ];

    /// As written to the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ListTenants => "tenant.list",
            Action::ReadTenant => "tenant.read",
            Action::ChangeTenant => "tenant.update",
            Action::CreateTenant => "tenant.create",
            Action::DeleteTenant => "tenant.delete",
            Action::Explain => "explain",
            Action::ReadAudit => "audit.read",
            Action::Export => "export",
            Action::ReadFleet => "fleet.read",
        }
    }
}

/// Whether `token` may do `action`, on `tenant` when the action is about one.
/// A tenant-admin may list tenants, but sees only its own (the caller filters).
pub fn allows(token: &AdminToken, action: Action, tenant: Option<&TenantId>) -> bool {
    use Action::*;
    match token.role {
        Role::Operator => true,
        Role::TenantAdmin => match action {
            ListTenants => true,
            ReadTenant | ChangeTenant => tenant.is_some_and(|t| owns(token, t)),
            CreateTenant | DeleteTenant | Explain | ReadAudit | Export | ReadFleet => false,
        },
        Role::Auditor => {
            matches!(
                action,
                ListTenants | ReadTenant | ReadAudit | Export | ReadFleet
            )
        }
        Role::Viewer => matches!(action, ListTenants | ReadTenant | Explain),
    }
}

/// Whether `token` sees `tenant` in listings.
pub fn sees(token: &AdminToken, tenant: &str) -> bool {
    token.role != Role::TenantAdmin || token.tenants.iter().any(|t| t.as_str() == tenant)
}

fn owns(token: &AdminToken, tenant: &TenantId) -> bool {
    token.tenants.contains(tenant)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that matches no configured hash.
    Invalid,
}

/// The configured token whose hash matches the presented one. Every configured hash is
/// compared, in constant time, so timing tells nothing about which (if any) matched.
pub fn authenticate<'t>(
    authorization: Option<&[u8]>,
    tokens: &'t [AdminToken],
) -> Result<&'t AdminToken, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?;
    let presented = match header.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => header[7..].trim_ascii(),
        _ => return Err(AuthError::Missing),
    };
    if presented.is_empty() {
        return Err(AuthError::Missing);
    }
    let digest: [u8; 32] = Sha256::digest(presented).into();
    let mut found = None;
    for token in tokens {
        if bool::from(token.sha256.ct_eq(&digest)) {
            found = Some(token);
        }
    }
    found.ok_or(AuthError::Invalid)
}

/// Hex SHA-256 of a token, as the config stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, tenants: &[&str], secret: &str) -> AdminToken {
        AdminToken {
            name: role.as_str().into(),
            role,
            sha256: Sha256::digest(secret.as_bytes()).into(),
            tenants: tenants
                .iter()
                .map(|t| TenantId::parse(t.as_bytes()).unwrap())
                .collect(),
        }
    }

    #[test]
    fn the_role_matrix() {
        use Action::*;
        let own = TenantId::parse(b"acme").unwrap();
        let other = TenantId::parse(b"globex").unwrap();
        // (role, actions allowed on its own tenant, actions allowed on another tenant)
        let expected: [(Role, &[Action], &[Action]); 4] = [
            (Role::Operator, &Action::ALL, &Action::ALL),
            (
                Role::TenantAdmin,
                &[ListTenants, ReadTenant, ChangeTenant],
                &[ListTenants],
            ),
            (
                Role::Auditor,
                &[ListTenants, ReadTenant, ReadAudit, Export, ReadFleet],
                &[ListTenants, ReadTenant, ReadAudit, Export, ReadFleet],
            ),
            (
                Role::Viewer,
                &[ListTenants, ReadTenant, Explain],
                &[ListTenants, ReadTenant, Explain],
            ),
        ];
        for (role, on_own, on_other) in expected {
            let t = token(
                role,
                if role == Role::TenantAdmin {
                    &["acme"]
                } else {
                    &[]
                },
                "s",
            );
            for action in Action::ALL {
                assert_eq!(
                    allows(&t, action, Some(&own)),
                    on_own.contains(&action),
                    "{role:?} {action:?} own"
                );
                assert_eq!(
                    allows(&t, action, Some(&other)),
                    on_other.contains(&action),
                    "{role:?} {action:?} other"
                );
            }
        }
        let admin = token(Role::TenantAdmin, &["acme"], "s");
        assert!(sees(&admin, "acme") && !sees(&admin, "globex"));
        assert!(sees(&token(Role::Viewer, &[], "s"), "globex"));
    }

    #[test]
    fn tokens_are_matched_by_hash() {
        let tokens = [
            token(Role::Operator, &[], "alpha"),
            token(Role::Viewer, &[], "beta"),
        ];
        assert_eq!(
            authenticate(Some(b"Bearer beta"), &tokens).unwrap().role,
            Role::Viewer
        );
        assert_eq!(
            authenticate(Some(b"bearer  alpha "), &tokens).unwrap().role,
            Role::Operator
        );
        assert_eq!(
            authenticate(Some(b"Bearer gamma"), &tokens),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            authenticate(Some(b"Bearer "), &tokens),
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(Some(b"Basic YWxwaGE="), &tokens),
            Err(AuthError::Missing)
        );
        assert_eq!(authenticate(None, &tokens), Err(AuthError::Missing));
        assert_eq!(token_hash("alpha"), hex::encode(tokens[0].sha256));
    }
}

//! API tokens: what a role may do, and how secrets are minted and recognised. Only a token's
//! SHA-256 is ever stored; the secret is shown once.

use rand::RngCore;
use sha2::{Digest, Sha256};
pub use tideway_api_types::Role;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Change apps, versions, releases, scaling.
    Deploy,
    /// Namespaces, tokens, anything else.
    Administer,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    /// `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
}

/// Why a principal may not do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Role { needed: Role },
    Namespace { namespace: String },
}

impl Principal {
    /// Whether the principal may take `action`, in `namespace` when the action is scoped to one.
    pub fn authorize(&self, action: Action, namespace: Option<&str>) -> Result<(), Denied> {
        let needed = match action {
            Action::Read => Role::Viewer,
            Action::Deploy => Role::Deployer,
            Action::Administer => Role::Admin,
        };
        if self.role < needed {
            return Err(Denied::Role { needed });
        }
        match (namespace, &self.namespaces) {
            (Some(ns), Some(allowed)) if !allowed.iter().any(|a| a == ns) => {
                Err(Denied::Namespace {
                    namespace: ns.to_owned(),
                })
            }
            // Cluster-wide administration needs an unrestricted token.
            (None, Some(_)) if action == Action::Administer => Err(Denied::Namespace {
                namespace: "*".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    pub fn can_see_namespace(&self, ns: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == ns))
    }
}

/// Prefix that makes Tideway tokens recognisable by secret scanners.
const TOKEN_PREFIX: &str = "tw_";

/// A fresh secret: 32 random bytes, hex-encoded.
pub fn mint_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What the store keeps instead of the secret. A fast hash is enough: secrets have 256 bits
/// of entropy, so there is nothing to brute-force.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn role_str(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Deployer => "deployer",
        Role::Admin => "admin",
    }
}

pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "viewer" => Some(Role::Viewer),
        "deployer" => Some(Role::Deployer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, namespaces: Option<Vec<&str>>) -> Principal {
        Principal {
            token_id: 1,
            name: "t".into(),
            role,
            namespaces: namespaces.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        let viewer = principal(Role::Viewer, None);
        assert!(viewer.authorize(Action::Read, Some("a")).is_ok());
        assert_eq!(
            viewer.authorize(Action::Deploy, Some("a")),
            Err(Denied::Role {
                needed: Role::Deployer
            })
        );
        let deployer = principal(Role::Deployer, None);
        assert!(deployer.authorize(Action::Deploy, Some("a")).is_ok());
        assert!(deployer.authorize(Action::Administer, None).is_err());
        assert!(principal(Role::Admin, None)
            .authorize(Action::Administer, None)
            .is_ok());
    }

    #[test]
    fn namespace_lists_restrict_every_action() {
        let p = principal(Role::Admin, Some(vec!["dev"]));
        assert!(p.authorize(Action::Deploy, Some("dev")).is_ok());
        assert!(p.authorize(Action::Read, Some("prod")).is_err());
        assert!(p.authorize(Action::Administer, None).is_err());
        assert!(p.can_see_namespace("dev"));
        assert!(!p.can_see_namespace("prod"));
    }

    #[test]
    fn secrets_are_unique_and_hashed() {
        let a = mint_secret();
        let b = mint_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("tw_") && a.len() == 67);
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}

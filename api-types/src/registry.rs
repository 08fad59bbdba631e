//! Service registries: connections to Consul and Eureka per namespace, how an app binds to
//! them, what is registered, and the sync jobs between registries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The protocol of a registry connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistryKind {
    Consul,
    Eureka,
    /// The registry Tideway serves itself, over both protocols (always present, named
    /// `builtin`).
    Builtin,
}

/// `POST /api/v1/namespaces/{ns}/registries`. Secrets are write-only: never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConnectionCreate {
    /// A DNS label; `builtin` is reserved.
    pub name: String,
    /// `consul` or `eureka`.
    pub kind: RegistryKind,
    /// Base URLs, e.g. `http://127.0.0.1:8500` or `http://eureka:8761/eureka/`.
    pub addresses: Vec<String>,
    /// Consul ACL token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Eureka basic credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// A registry connection as the API shows it (no secrets).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistryConnection {
    pub namespace: String,
    pub name: String,
    pub kind: RegistryKind,
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub has_token: bool,
    pub has_credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The bridge's view: healthy, last error, registered count, next retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Who registers an app's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindingMode {
    /// Tideway registers the instances (apps that know nothing of registries).
    #[default]
    Platform,
    /// The app registers itself; Tideway injects what its client reads
    /// (`EUREKA_CLIENT_SERVICEURL_DEFAULTZONE`, `EUREKA_INSTANCE_INSTANCE_ID`,
    /// `SPRING_CLOUD_CONSUL_HOST`, ...) and still takes each instance out before it stops.
    #[serde(rename = "self")]
    SelfRegistration,
}

/// An app's binding to a registry connection of its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryBinding {
    /// A connection name, or `builtin`.
    pub registry: String,
    /// Defaults to the app's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub mode: BindingMode,
}

/// One instance a registry holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistryEntry {
    pub service: String,
    pub instance_id: String,
    pub address: String,
    pub port: u16,
    /// `UP`, `OUT_OF_SERVICE`, `DOWN`, `STARTING`.
    pub status: String,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// `platform`, `eureka` or `consul`: who registered it.
    pub origin: String,
}

/// `POST /api/v1/namespaces/{ns}/registries/sync`: copy `services` one way.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrySyncCreate {
    pub name: String,
    /// Source connection.
    pub from: String,
    /// Destination connection.
    pub to: String,
    pub services: Vec<String>,
}

/// A sync job with its state, lag and last error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistrySync {
    pub namespace: String,
    pub name: String,
    pub from: String,
    pub to: String,
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

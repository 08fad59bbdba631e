//! An Eureka REST client: register, renew, cancel, status overrides, and the full,
//! per-app and delta reads, with a client-side cache that merges deltas and checks them
//! against `apps__hashcode` the way Netflix's `DiscoveryClient` does.
//!
//! * **Base path.** Each URL carries its base path (`…/eureka/` for Spring, `…/eureka/v2/`
//!   for the Netflix war); a URL without a path gets `/eureka/`.
//! * **Credentials.** Basic auth from the URL's user info (`http://u:p@host/eureka/`),
//!   else from the configured username and password.
//! * **Failover.** Requests start at the URL that answered last and move on when one
//!   cannot be reached or answers 5xx/429.
//! * **Wire format.** JSON only: we always send `Accept: application/json` (without it
//!   Eureka answers XML). Writes follow what Netflix and Spring servers require
//!   (`@class` in `dataCenterInfo`, `port` objects with string `@enabled`, timestamps as
//!   strings); reads are lenient (see [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    base_url, encode_segment, http_client, join, json_body, status_error, ClientError, Failover,
};
use crate::model::{reconcile_hash, ChangeAction, DataCenter, EurekaStatus, Renewal};

/// Where and how to reach Eureka. The password (also one in a URL) is never serialized
/// or printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EurekaConfig {
    /// Service URLs with their base path, `http://host:port/eureka/` (Spring) or
    /// `http://host:port/eureka/v2/` (Netflix); user info in a URL is used for basic auth.
    #[serde(serialize_with = "redacted_urls")]
    pub urls: Vec<String>,
    /// Basic-auth user for URLs without user info.
    pub username: Option<String>,
    /// Basic-auth password for URLs without user info.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Availability zone, written as metadata `zone` on registrations.
    pub zone: Option<String>,
}

/// A URL with any password replaced, for logs and the API.
fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

fn redacted_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| redact_url(u)))
}

impl std::fmt::Debug for EurekaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("EurekaConfig")
            .field("urls", &urls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("zone", &self.zone)
            .finish()
    }
}

#[derive(Clone)]
struct Credentials {
    username: String,
    password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The Eureka client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EurekaClient {
    http: reqwest::Client,
    endpoints: Arc<Failover>,
    /// Per base URL (same order as the failover list).
    credentials: Arc<Vec<Option<Credentials>>>,
    zone: Option<String>,
}

/// Eureka `leaseInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LeaseInfo {
    /// `renewalIntervalInSecs`.
    pub renewal_interval_secs: u64,
    /// `durationInSecs`.
    pub duration_secs: u64,
    /// `registrationTimestamp` (ms).
    pub registration_timestamp: u64,
    /// `lastRenewalTimestamp` (ms; legacy alias `renewalTimestamp`).
    pub last_renewal_timestamp: u64,
    /// `evictionTimestamp` (ms).
    pub eviction_timestamp: u64,
    /// `serviceUpTimestamp` (ms).
    pub service_up_timestamp: u64,
}

/// An Eureka `InstanceInfo`, as written by [`EurekaClient::register`] and read from
/// application documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `instanceId` (falls back to `hostName` when a server omits it).
    pub instance_id: String,
    /// `app`, upper-cased.
    pub app: String,
    /// `hostName`.
    pub host_name: String,
    /// `ipAddr`.
    pub ip_addr: String,
    /// `status`.
    pub status: EurekaStatus,
    /// `overriddenStatus` (`overriddenstatus` on input too); `UNKNOWN` means none.
    pub overridden_status: EurekaStatus,
    /// `port.$`.
    pub port: u16,
    /// `port.@enabled`.
    pub port_enabled: bool,
    /// `securePort.$`.
    pub secure_port: u16,
    /// `securePort.@enabled`.
    pub secure_port_enabled: bool,
    /// `countryId`.
    pub country_id: u64,
    /// `dataCenterInfo`.
    pub data_center: DataCenter,
    /// `leaseInfo`.
    pub lease: LeaseInfo,
    /// `metadata`, without the Jackson `@class` marker.
    pub metadata: BTreeMap<String, String>,
    /// `homePageUrl`.
    pub home_page_url: String,
    /// `statusPageUrl`.
    pub status_page_url: String,
    /// `healthCheckUrl`.
    pub health_check_url: String,
    /// `vipAddress`.
    pub vip_address: String,
    /// `secureVipAddress`.
    pub secure_vip_address: String,
    /// `lastUpdatedTimestamp` (ms).
    pub last_updated_timestamp: u64,
    /// `lastDirtyTimestamp` (ms).
    pub last_dirty_timestamp: u64,
    /// `actionType` (deltas).
    pub action_type: Option<ChangeAction>,
}

/// One application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// `name`, upper-cased.
    pub name: String,
    /// `instance`.
    pub instances: Vec<InstanceInfo>,
}

/// An applications document (full or delta).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applications {
    /// `versions__delta`.
    pub version_delta: i64,
    /// `apps__hashcode` (of the whole registry, in deltas too).
    pub apps_hashcode: String,
    /// `application`.
    pub applications: Vec<Application>,
}

impl Applications {
    /// Every instance of every application.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.applications.iter().flat_map(|a| a.instances.iter())
    }

    /// The application with this name, compared case-insensitively.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Eureka's reconcile hash of this document (`STATUS_count_`, sorted).
    pub fn reconcile_hash(&self) -> String {
        reconcile_hash(self.instances().map(|i| i.status))
    }

    /// Merges a delta by `actionType` (`DiscoveryClient.updateDelta`): added and modified
    /// instances replace ours, deleted ones are removed, applications left empty go.
    pub fn apply_delta(&mut self, delta: &Applications) {
        for instance in delta.instances() {
            let app_name = instance.app.to_uppercase();
            let position = self
                .applications
                .iter()
                .position(|a| a.name.eq_ignore_ascii_case(&app_name));
            match instance.action_type {
                Some(ChangeAction::Deleted) => {
                    if let Some(p) = position {
                        self.applications[p]
                            .instances
                            .retain(|i| i.instance_id != instance.instance_id);
                    }
                }
                _ => {
                    let p = match position {
                        Some(p) => p,
                        None => {
                            self.applications.push(Application {
                                name: app_name,
                                instances: Vec::new(),
                            });
                            self.applications.len() - 1
                        }
                    };
                    let app = &mut self.applications[p];
                    app.instances
                        .retain(|i| i.instance_id != instance.instance_id);
                    app.instances.push(instance.clone());
                }
            }
        }
        self.applications.retain(|a| !a.instances.is_empty());
        self.apps_hashcode = delta.apps_hashcode.clone();
        self.version_delta = delta.version_delta;
    }
}

impl EurekaClient {
    /// A client for the configured service URLs.
    pub fn new(config: EurekaConfig) -> Result<Self, ClientError> {
        let mut bases = Vec::new();
        let mut credentials = Vec::new();
        for raw in &config.urls {
            let mut url = base_url(raw, "/eureka/")?;
            let from_url = (!url.username().is_empty()).then(|| Credentials {
                username: crate::text::decode_segment(url.username()),
                password: url.password().map(crate::text::decode_segment),
            });
            // Clearing user info cannot fail on an http(s) URL with a host.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            let from_config = config.username.as_ref().map(|u| Credentials {
                username: u.clone(),
                password: config.password.clone(),
            });
            credentials.push(from_url.or(from_config));
            bases.push(url);
        }
        Ok(Self {
            http: http_client()?,
            endpoints: Arc::new(Failover::new(bases)?),
            credentials: Arc::new(credentials),
            zone: config.zone.filter(|z| !z.is_empty()),
        })
    }

    /// The configured zone, if any.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The service URL requests currently go to (without credentials).
    pub fn current_url(&self) -> String {
        self.endpoints.current().to_string()
    }

    fn request(
        &self,
        method: &Method,
        base: &Url,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<RequestBuilder, ClientError> {
        let url = join(base, path)?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("DiscoveryIdentity-Name", "TidewayRegistryBridge")
            .header("DiscoveryIdentity-Version", env!("CARGO_PKG_VERSION"));
        if !query.is_empty() {
            request = request.query(query);
        }
        let index = self.endpoints.bases().iter().position(|b| b == base);
        if let Some(Some(c)) = index.and_then(|i| self.credentials.get(i)) {
            request = request.basic_auth(&c.username, c.password.as_ref());
        }
        Ok(request)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(Url, reqwest::Response), ClientError> {
        self.endpoints
            .send(|base| {
                let request = self.request(&method, base, path, query)?;
                Ok(match body {
                    Some(b) => request.json(b),
                    None => request,
                })
            })
            .await
    }

    async fn expect_success(
        &self,
        (url, response): (Url, reqwest::Response),
    ) -> Result<(), ClientError> {
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&url, response).await)
        }
    }

    fn instance_path(app: &str, id: &str) -> String {
        format!(
            "apps/{}/{}",
            encode_segment(&app.to_uppercase()),
            encode_segment(id)
        )
    }

    /// `POST apps/{APP}` (Eureka answers 204; any 2xx is accepted).
    pub async fn register(&self, instance: &InstanceInfo) -> Result<(), ClientError> {
        let body = json!({ "instance": instance_json(instance) });
        let path = format!("apps/{}", encode_segment(&instance.app.to_uppercase()));
        let answer = self.send(Method::POST, &path, &[], Some(&body)).await?;
        self.expect_success(answer).await
    }

    /// `PUT apps/{APP}/{ID}`: 200 renews; 404 means the server does not know the lease
    /// (or has an older copy) and the caller must re-register.
    pub async fn renew(&self, app: &str, id: &str) -> Result<Renewal, ClientError> {
        let answer = self
            .send(Method::PUT, &Self::instance_path(app, id), &[], None)
            .await?;
        match self.expect_success(answer).await {
            Ok(()) => Ok(Renewal::Renewed),
            Err(ClientError::NotFound(_)) => Ok(Renewal::NotFound),
            Err(e) => Err(e),
        }
    }

    /// `DELETE apps/{APP}/{ID}`; `Ok(false)` when the server did not know it.
    pub async fn cancel(&self, app: &str, id: &str) -> Result<bool, ClientError> {
        let answer = self
            .send(Method::DELETE, &Self::instance_path(app, id), &[], None)
            .await?;
        match self.expect_success(answer).await {
            Ok(()) => Ok(true),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT apps/{APP}/{ID}/status?value=&lastDirtyTimestamp=`: records a status override.
    pub async fn set_status_override(
        &self,
        app: &str,
        id: &str,
        status: EurekaStatus,
        last_dirty: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut query = vec![("value", status.as_str().to_owned())];
        if let Some(d) = last_dirty {
            query.push(("lastDirtyTimestamp", d.to_string()));
        }
        let path = format!("{}/status", Self::instance_path(app, id));
        let answer = self.send(Method::PUT, &path, &query, None).await?;
        self.expect_success(answer).await
    }

    /// `DELETE apps/{APP}/{ID}/status[?value=]`: removes the override; the instance falls
    /// back to `value` (Eureka: `UNKNOWN` when absent, which makes the next renewal 404).
    pub async fn delete_status_override(
        &self,
        app: &str,
        id: &str,
        value: Option<EurekaStatus>,
        last_dirty: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut query = Vec::new();
        if let Some(v) = value {
            query.push(("value", v.as_str().to_owned()));
        }
        if let Some(d) = last_dirty {
            query.push(("lastDirtyTimestamp", d.to_string()));
        }
        let path = format!("{}/status", Self::instance_path(app, id));
        let answer = self.send(Method::DELETE, &path, &query, None).await?;
        self.expect_success(answer).await
    }

    /// `PUT apps/{APP}/{ID}/metadata?k=v`: merges into the instance's metadata.
    pub async fn update_metadata(
        &self,
        app: &str,
        id: &str,
        pairs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let query: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let path = format!("{}/metadata", Self::instance_path(app, id));
        let answer = self.send(Method::PUT, &path, &query, None).await?;
        self.expect_success(answer).await
    }

    async fn read(&self, path: &str) -> Result<Option<(Url, Value)>, ClientError> {
        let (url, response) = self.send(Method::GET, path, &[], None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(&url, response).await);
        }
        let body = json_body(&url, response).await?;
        Ok(Some((url, body)))
    }

    async fn read_apps(&self, path: &str) -> Result<Applications, ClientError> {
        match self.read(path).await? {
            Some((url, body)) => parse_applications(&body).map_err(|reason| ClientError::Decode {
                endpoint: url.to_string(),
                reason,
            }),
            None => Err(ClientError::NotFound(path.to_owned())),
        }
    }

    /// `GET apps/`: the whole registry.
    pub async fn apps(&self) -> Result<Applications, ClientError> {
        self.read_apps("apps/").await
    }

    /// `GET apps/delta`: instances changed recently, with the whole registry's hash.
    pub async fn delta(&self) -> Result<Applications, ClientError> {
        self.read_apps("apps/delta").await
    }

    /// `GET apps/{APP}`; `None` when the server has no such application.
    pub async fn app(&self, app: &str) -> Result<Option<Application>, ClientError> {
        let path = format!("apps/{}", encode_segment(&app.to_uppercase()));
        match self.read(&path).await? {
            Some((url, body)) => {
                parse_application_doc(&body)
                    .map(Some)
                    .map_err(|reason| ClientError::Decode {
                        endpoint: url.to_string(),
                        reason,
                    })
            }
            None => Ok(None),
        }
    }

    /// `GET apps/{APP}/{ID}`; `None` when unknown.
    pub async fn instance(&self, app: &str, id: &str) -> Result<Option<InstanceInfo>, ClientError> {
        match self.read(&Self::instance_path(app, id)).await? {
            Some((url, body)) => {
                let inner = body.get("instance").unwrap_or(&body);
                parse_instance(inner)
                    .map(Some)
                    .map_err(|reason| ClientError::Decode {
                        endpoint: url.to_string(),
                        reason,
                    })
            }
            None => Ok(None),
        }
    }
}

/// A local copy of the registry kept fresh with deltas, as Eureka clients do: the first
/// fetch is full, later ones are deltas merged by `actionType`; when the merged copy's
/// hash differs from the server's `apps__hashcode`, or the delta is refused, or the copy
/// is older than the server's delta retention, it fetches in full again.
#[derive(Debug, Clone, Default)]
pub struct AppsCache {
    apps: Option<Applications>,
    last_refresh: Option<DateTime<Utc>>,
    full_fetches: u64,
    delta_fetches: u64,
}

/// How old the cache may get before a delta could have missed changes (Eureka keeps
/// deltas 3 min; we stay well inside that).
const CACHE_MAX_DELTA_GAP: Duration = Duration::from_secs(120);

impl AppsCache {
    /// An empty cache; the first refresh fetches in full.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached registry, if fetched.
    pub fn apps(&self) -> Option<&Applications> {
        self.apps.as_ref()
    }

    /// Full fetches so far.
    pub fn full_fetches(&self) -> u64 {
        self.full_fetches
    }

    /// Delta fetches so far (merged or not).
    pub fn delta_fetches(&self) -> u64 {
        self.delta_fetches
    }

    /// Brings the cache up to date and returns it.
    pub async fn refresh(
        &mut self,
        client: &EurekaClient,
        now: DateTime<Utc>,
    ) -> Result<&Applications, ClientError> {
        let fresh_enough = self.last_refresh.is_some_and(|at| {
            now.signed_duration_since(at)
                .to_std()
                .is_ok_and(|age| age < CACHE_MAX_DELTA_GAP)
        });
        let merged = match (&self.apps, fresh_enough) {
            (Some(current), true) => {
                self.delta_fetches += 1;
                match client.delta().await {
                    Ok(delta) => {
                        let mut merged = current.clone();
                        merged.apply_delta(&delta);
                        if merged.reconcile_hash() == delta.apps_hashcode {
                            Some(merged)
                        } else {
                            tracing::debug!(
                                local = %merged.reconcile_hash(),
                                server = %delta.apps_hashcode,
                                "RegistryEurekaHashMismatch"
                            );
                            None
                        }
                    }
                    Err(ClientError::Denied { .. } | ClientError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        let apps = match merged {
            Some(m) => m,
            None => {
                self.full_fetches += 1;
                client.apps().await?
            }
        };
        self.last_refresh = Some(now);
        Ok(self.apps.insert(apps))
    }
}

// ---------------------------------------------------------------------------------------
// JSON encoding (strict, what Netflix and Spring servers expect).

fn metadata_json(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() {
        json!({ "@class": "java.util.Collections$EmptyMap" })
    } else {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }
}

/// The `instance` object of a registration.
pub fn instance_json(i: &InstanceInfo) -> Value {
    let mut dc = json!({ "@class": i.data_center.class, "name": i.data_center.name });
    if !i.data_center.metadata.is_empty() {
        dc["metadata"] = metadata_json(&i.data_center.metadata);
    }
    json!({
        "instanceId": i.instance_id,
        "hostName": i.host_name,
        "app": i.app.to_uppercase(),
        "ipAddr": i.ip_addr,
        "status": i.status.as_str(),
        "overriddenStatus": i.overridden_status.as_str(),
        "port": { "$": i.port, "@enabled": i.port_enabled.to_string() },
        "securePort": { "$": i.secure_port, "@enabled": i.secure_port_enabled.to_string() },
        "countryId": i.country_id,
        "dataCenterInfo": dc,
        "leaseInfo": {
            "renewalIntervalInSecs": i.lease.renewal_interval_secs,
            "durationInSecs": i.lease.duration_secs,
        },
        "metadata": metadata_json(&i.metadata),
        "homePageUrl": i.home_page_url,
        "statusPageUrl": i.status_page_url,
        "healthCheckUrl": i.health_check_url,
        "vipAddress": i.vip_address,
        "secureVipAddress": i.secure_vip_address,
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": i.last_updated_timestamp.to_string(),
        "lastDirtyTimestamp": i.last_dirty_timestamp.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// JSON decoding (lenient, as Spring's Jackson codec and eureka-js-client read).

/// A list that legacy XStream JSON may have collapsed to one object (or left out).
fn list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    }
}

fn text(o: &Map<String, Value>, key: &str) -> String {
    match o.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn number(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn boolean(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => default,
    }
}

/// `{"$": 8080, "@enabled": "true"}`, `{"$": "8080", "@enabled": true}` or a bare number.
fn port_value(v: Option<&Value>, default_enabled: bool) -> (u16, bool) {
    match v {
        Some(Value::Object(o)) => (
            u16::try_from(number(o.get("$"))).unwrap_or(0),
            boolean(o.get("@enabled"), default_enabled),
        ),
        other => (u16::try_from(number(other)).unwrap_or(0), default_enabled),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(o)) = v else {
        return BTreeMap::new();
    };
    o.iter()
        .filter(|(k, _)| k.as_str() != "@class")
        .filter_map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), value))
        })
        .collect()
}

fn status(o: &Map<String, Value>, keys: &[&str]) -> EurekaStatus {
    keys.iter()
        .find_map(|k| {
            o.get(*k)
                .and_then(Value::as_str)
                .and_then(EurekaStatus::parse)
        })
        .unwrap_or(EurekaStatus::Unknown)
}

fn action(s: &str) -> Option<ChangeAction> {
    match s.trim().to_ascii_uppercase().as_str() {
        "ADDED" => Some(ChangeAction::Added),
        "MODIFIED" => Some(ChangeAction::Modified),
        "DELETED" => Some(ChangeAction::Deleted),
        _ => None,
    }
}

/// Decodes one `InstanceInfo` object.
pub fn parse_instance(v: &Value) -> Result<InstanceInfo, String> {
    let Value::Object(o) = v else {
        return Err("instance: expected an object".into());
    };
    let host_name = text(o, "hostName");
    let mut instance_id = text(o, "instanceId");
    if instance_id.is_empty() {
        instance_id = host_name.clone();
    }
    if instance_id.is_empty() {
        return Err("instance: neither instanceId nor hostName".into());
    }
    let (port, port_enabled) = port_value(o.get("port"), true);
    let (secure_port, secure_port_enabled) = port_value(o.get("securePort"), false);
    let data_center = match o.get("dataCenterInfo") {
        Some(Value::Object(dc)) => DataCenter {
            class: text(dc, "@class"),
            name: text(dc, "name"),
            metadata: string_map(dc.get("metadata")),
        },
        _ => DataCenter::default(),
    };
    let lease = match o.get("leaseInfo") {
        Some(Value::Object(l)) => LeaseInfo {
            renewal_interval_secs: number(l.get("renewalIntervalInSecs")),
            duration_secs: number(l.get("durationInSecs")),
            registration_timestamp: number(l.get("registrationTimestamp")),
            last_renewal_timestamp: number(
                l.get("lastRenewalTimestamp")
                    .or_else(|| l.get("renewalTimestamp")),
            ),
            eviction_timestamp: number(l.get("evictionTimestamp")),
            service_up_timestamp: number(l.get("serviceUpTimestamp")),
        },
        _ => LeaseInfo::default(),
    };
    let mut ip_addr = text(o, "ipAddr");
    if ip_addr.is_empty() {
        ip_addr = host_name.clone();
    }
    Ok(InstanceInfo {
        instance_id,
        app: text(o, "app").to_uppercase(),
        host_name,
        ip_addr,
        status: status(o, &["status"]),
        overridden_status: status(o, &["overriddenStatus", "overriddenstatus"]),
        port,
        port_enabled,
        secure_port,
        secure_port_enabled,
        country_id: number(o.get("countryId")),
        data_center,
        lease,
        metadata: string_map(o.get("metadata")),
        home_page_url: text(o, "homePageUrl"),
        status_page_url: text(o, "statusPageUrl"),
        health_check_url: text(o, "healthCheckUrl"),
        vip_address: text(o, "vipAddress"),
        secure_vip_address: text(o, "secureVipAddress"),
        last_updated_timestamp: number(o.get("lastUpdatedTimestamp")),
        last_dirty_timestamp: number(o.get("lastDirtyTimestamp")),
        action_type: o.get("actionType").and_then(Value::as_str).and_then(action),
    })
}

/// Decodes one application object (`{"name":…,"instance":[…]}`).
pub fn parse_application(v: &Value) -> Result<Application, String> {
    let Value::Object(o) = v else {
        return Err("application: expected an object".into());
    };
    let name = text(o, "name").to_uppercase();
    let instances = list(o.get("instance"))
        .into_iter()
        .map(|i| {
            let mut instance = parse_instance(i)?;
            if instance.app.is_empty() {
                instance.app.clone_from(&name);
            }
            Ok(instance)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Application { name, instances })
}

/// Decodes a `{"application":{…}}` document.
pub fn parse_application_doc(v: &Value) -> Result<Application, String> {
    parse_application(v.get("application").unwrap_or(v))
}

/// Decodes a `{"applications":{…}}` document (full or delta). Like Spring's reader, any
/// key starting with `version` or `apps` is taken for `versions__delta` and
/// `apps__hashcode`, so both the escaped and the plain spelling parse.
pub fn parse_applications(v: &Value) -> Result<Applications, String> {
    let Some(Value::Object(o)) = v.get("applications") else {
        return Err("expected an `applications` object".into());
    };
    let mut apps = Applications::default();
    for (key, value) in o {
        if key.starts_with("version") {
            apps.version_delta = match value {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                Value::String(s) => s.trim().parse().unwrap_or(0),
                _ => 0,
            };
        } else if key.starts_with("apps") {
            apps.apps_hashcode = value.as_str().unwrap_or_default().to_owned();
        } else if key == "application" {
            apps.applications = list(Some(value))
                .into_iter()
                .map(parse_application)
                .collect::<Result<Vec<_>, String>>()?;
        }
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, app: &str, status: EurekaStatus) -> InstanceInfo {
        InstanceInfo {
            instance_id: id.into(),
            app: app.into(),
            host_name: "h".into(),
            ip_addr: "10.0.0.1".into(),
            status,
            overridden_status: EurekaStatus::Unknown,
            port: 8080,
            port_enabled: true,
            secure_port: 443,
            secure_port_enabled: false,
            country_id: 1,
            data_center: DataCenter::default(),
            lease: LeaseInfo::default(),
            metadata: BTreeMap::new(),
            home_page_url: String::new(),
            status_page_url: String::new(),
            health_check_url: String::new(),
            vip_address: String::new(),
            secure_vip_address: String::new(),
            last_updated_timestamp: 0,
            last_dirty_timestamp: 0,
            action_type: None,
        }
    }

    #[test]
    fn secrets_are_not_printed_or_serialized() {
        let config = EurekaConfig {
            urls: vec!["http://u:hunter2@h:8761/eureka/".into()],
            username: Some("u".into()),
            password: Some("hunter3".into()),
            zone: None,
        };
        let client = EurekaClient::new(config.clone()).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{client:?}"),
            serde_json::to_string(&config).unwrap(),
        ] {
            assert!(!text.contains("hunter"), "{text}");
        }
    }

    #[test]
    fn reads_lenient_shapes() {
        let doc = json!({"applications": {"versions_delta": 3, "apps_hashcode": "UP_1_",
            "application": {"name": "order", "instance": {
                "hostName": "10.0.0.9", "app": "order", "ipAddr": "10.0.0.9", "status": "UP",
                "overriddenstatus": "OUT_OF_SERVICE", "port": 8080,
                "securePort": {"$": "8443", "@enabled": true},
                "metadata": {"@class": "java.util.Collections$EmptyMap"},
                "lastDirtyTimestamp": 1700000000000_u64, "actionType": "MODIFIED"}}}});
        let apps = parse_applications(&doc).unwrap();
        assert_eq!(apps.version_delta, 3);
        assert_eq!(apps.apps_hashcode, "UP_1_");
        let i = &apps.applications[0].instances[0];
        assert_eq!(i.instance_id, "10.0.0.9");
        assert_eq!(i.app, "ORDER");
        assert_eq!((i.port, i.port_enabled), (8080, true));
        assert_eq!((i.secure_port, i.secure_port_enabled), (8443, true));
        assert_eq!(i.overridden_status, EurekaStatus::OutOfService);
        assert!(i.metadata.is_empty());
        assert_eq!(i.last_dirty_timestamp, 1_700_000_000_000);
        assert_eq!(i.action_type, Some(ChangeAction::Modified));
    }

    #[test]
    fn writes_what_java_servers_need() {
        let v = instance_json(&instance("a", "order", EurekaStatus::Up));
        assert_eq!(v["app"], "ORDER");
        assert_eq!(v["port"], json!({"$": 8080, "@enabled": "true"}));
        assert_eq!(
            v["dataCenterInfo"]["@class"],
            "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
        );
        assert_eq!(v["metadata"]["@class"], "java.util.Collections$EmptyMap");
        assert_eq!(v["lastDirtyTimestamp"], "0");
        let round = parse_instance(&v).unwrap();
        assert_eq!(round, instance("a", "ORDER", EurekaStatus::Up));
    }

    #[test]
    fn delta_merge_follows_action_types() {
        let mut apps = Applications {
            version_delta: 1,
            apps_hashcode: "UP_2_".into(),
            applications: vec![Application {
                name: "ORDER".into(),
                instances: vec![
                    instance("a", "ORDER", EurekaStatus::Up),
                    instance("b", "ORDER", EurekaStatus::Up),
                ],
            }],
        };
        let mut deleted = instance("a", "ORDER", EurekaStatus::Up);
        deleted.action_type = Some(ChangeAction::Deleted);
        let mut modified = instance("b", "ORDER", EurekaStatus::OutOfService);
        modified.action_type = Some(ChangeAction::Modified);
        let mut added = instance("c", "PAY", EurekaStatus::Up);
        added.action_type = Some(ChangeAction::Added);
        let delta = Applications {
            version_delta: 7,
            apps_hashcode: "OUT_OF_SERVICE_1_UP_1_".into(),
            applications: vec![
                Application {
                    name: "ORDER".into(),
                    instances: vec![deleted, modified],
                },
                Application {
                    name: "PAY".into(),
                    instances: vec![added],
                },
            ],
        };
        apps.apply_delta(&delta);
        assert_eq!(apps.reconcile_hash(), delta.apps_hashcode);
        let ids: Vec<_> = apps.instances().map(|i| i.instance_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(apps.version_delta, 7);
    }
}

//! Tideway's gRPC contracts: with gateways that run in their own process (`tideway
//! gateway`, this module) and with tools (`tideway.v1`, [`api`]).
//!
//! It owns the protos under `tideway/`, the code generated from them (compiled at build time
//! with the pure-Rust `protox`, so no system `protoc` is needed), the encoded descriptor set
//! for reflection ([`FILE_DESCRIPTOR_SET`]) and the conversions between the gateway messages
//! and the gateway's own types:
//! [`tideway_gateway::route::RouteTable`] (control plane → gateway, `WatchRoutes`) and
//! [`tideway_gateway::metrics::SecondSample`] (gateway → control plane, `PushMetrics`).
//! The traffic policy travels as the JSON of the public `tideway_api_types::TrafficPolicy`.
//!
//! It depends on the gateway and the API types only; it must never depend on the control
//! plane, so both the `tideway` binary (server and remote gateway) and other clients can
//! use it.

pub mod api;

use std::net::SocketAddr;

use tideway_gateway::metrics::SecondSample;
use tideway_gateway::route;

/// Generated messages, client and server of `tideway.gateway.v1`.
#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tideway.gateway.v1");
}

/// The encoded `FileDescriptorSet` of every proto here (with comments and the imported
/// well-known types), for a gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tideway_descriptor.bin"));

pub use v1::gateway_sync_client::GatewaySyncClient;
pub use v1::gateway_sync_server::{GatewaySync, GatewaySyncServer};

/// A wire message that does not describe a valid route table.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("app {namespace}/{app}: invalid traffic policy: {source}")]
    Policy {
        namespace: String,
        app: String,
        source: serde_json::Error,
    },
    #[error("backend {instance}: invalid address {addr:?}")]
    Addr { instance: String, addr: String },
}

/// The route table as sent on `WatchRoutes`.
pub fn table_to_proto(table: &route::RouteTable) -> v1::RouteTableMsg {
    v1::RouteTableMsg {
        apps: table
            .apps
            .iter()
            .map(|a| v1::AppRoute {
                namespace: a.namespace.clone(),
                app: a.app.clone(),
                hosts: a.hosts.clone(),
                path_prefixes: a.path_prefixes.clone(),
                // Serializing a plain data type to a string does not fail.
                policy_json: serde_json::to_string(&a.policy).unwrap_or_default(),
                default_version: a.default_version,
                versions: a
                    .versions
                    .iter()
                    .map(|v| v1::VersionRoute {
                        version: v.version,
                        backends: v
                            .backends
                            .iter()
                            .map(|b| v1::Backend {
                                instance: b.instance.clone(),
                                addr: b.addr.to_string(),
                            })
                            .collect(),
                    })
                    .collect(),
                scale_to_zero: a.scale_to_zero,
            })
            .collect(),
    }
}

/// The route table received on `WatchRoutes`; refused whole if any part is invalid.
pub fn table_from_proto(msg: v1::RouteTableMsg) -> Result<route::RouteTable, ConvertError> {
    let apps = msg
        .apps
        .into_iter()
        .map(|a| {
            let policy =
                serde_json::from_str(&a.policy_json).map_err(|source| ConvertError::Policy {
                    namespace: a.namespace.clone(),
                    app: a.app.clone(),
                    source,
                })?;
            let versions = a
                .versions
                .into_iter()
                .map(|v| {
                    let backends = v
                        .backends
                        .into_iter()
                        .map(|b| match b.addr.parse::<SocketAddr>() {
                            Ok(addr) => Ok(route::Backend {
                                instance: b.instance,
                                addr,
                            }),
                            Err(_) => Err(ConvertError::Addr {
                                instance: b.instance,
                                addr: b.addr,
                            }),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(route::VersionRoute {
                        version: v.version,
                        backends,
                    })
                })
                .collect::<Result<Vec<_>, ConvertError>>()?;
            Ok(route::AppRoute {
                namespace: a.namespace,
                app: a.app,
                hosts: a.hosts,
                path_prefixes: a.path_prefixes,
                policy,
                default_version: a.default_version,
                versions,
                scale_to_zero: a.scale_to_zero,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    Ok(route::RouteTable { apps })
}

/// A closed second of one series, as sent on `PushMetrics`.
pub fn sample_to_proto(s: &SecondSample) -> v1::SecondSample {
    v1::SecondSample {
        namespace: s.namespace.clone(),
        app: s.app.clone(),
        version: s.version,
        instance: s.instance.clone(),
        second: s.second,
        requests: s.requests,
        responses_2xx: s.responses[0],
        responses_3xx: s.responses[1],
        responses_4xx: s.responses[2],
        responses_5xx: s.responses[3],
        busy_ns: s.busy_ns,
        latency: s
            .latency
            .iter()
            .map(|&(bucket, count)| v1::HistogramBucket {
                bucket: u32::from(bucket),
                count,
            })
            .collect(),
    }
}

/// A received sample. Histogram buckets out of range are dropped (the gateway's ingest
/// ignores them too); nothing else can be invalid.
pub fn sample_from_proto(s: v1::SecondSample) -> SecondSample {
    SecondSample {
        namespace: s.namespace,
        app: s.app,
        version: s.version,
        instance: s.instance,
        second: s.second,
        requests: s.requests,
        responses: [
            s.responses_2xx,
            s.responses_3xx,
            s.responses_4xx,
            s.responses_5xx,
        ],
        busy_ns: s.busy_ns,
        latency: s
            .latency
            .into_iter()
            .filter_map(|b| Some((u8::try_from(b.bucket).ok()?, b.count)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tideway_api_types::TrafficPolicy;

    fn table() -> route::RouteTable {
        let policy: TrafficPolicy = serde_json::from_value(serde_json::json!({
            "weights": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
            "sticky": {"header": "x-user"}
        }))
        .unwrap();
        route::RouteTable {
            apps: vec![route::AppRoute {
                namespace: "default".into(),
                app: "hello".into(),
                hosts: vec!["hello.default.localhost".into(), "hello.example.com".into()],
                path_prefixes: vec!["/hello".into()],
                policy,
                default_version: Some(2),
                versions: vec![
                    route::VersionRoute {
                        version: 1,
                        backends: vec![route::Backend {
                            instance: "i-1".into(),
                            addr: "127.0.0.1:4001".parse().unwrap(),
                        }],
                    },
                    route::VersionRoute {
                        version: 2,
                        backends: vec![route::Backend {
                            instance: "i-2".into(),
                            addr: "[::1]:4002".parse().unwrap(),
                        }],
                    },
                ],
                scale_to_zero: true,
            }],
        }
    }

    #[test]
    fn route_table_round_trips() {
        let t = table();
        assert_eq!(table_from_proto(table_to_proto(&t)).unwrap(), t);
        assert_eq!(
            table_from_proto(table_to_proto(&route::RouteTable::default())).unwrap(),
            route::RouteTable::default()
        );
    }

    #[test]
    fn invalid_tables_are_refused() {
        let mut msg = table_to_proto(&table());
        msg.apps[0].policy_json = "{".into();
        assert!(matches!(
            table_from_proto(msg),
            Err(ConvertError::Policy { .. })
        ));
        let mut msg = table_to_proto(&table());
        msg.apps[0].versions[0].backends[0].addr = "nowhere".into();
        assert!(matches!(
            table_from_proto(msg),
            Err(ConvertError::Addr { .. })
        ));
    }

    #[test]
    fn samples_round_trip() {
        let s = SecondSample {
            namespace: "default".into(),
            app: "hello".into(),
            version: 3,
            instance: "i-1".into(),
            second: 1_700_000_000,
            requests: 7,
            responses: [5, 1, 1, 0],
            busy_ns: 123_456,
            latency: vec![(0, 2), (12, 5)],
        };
        assert_eq!(sample_from_proto(sample_to_proto(&s)), s);
    }
}

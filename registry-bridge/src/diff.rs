//! The bridge's pure core: `diff(desired, observed) -> Vec<RegistryOp>`.
//!
//! Rules, per instance ID:
//!
//! * **Only owned entries are touched.** Observed entries without the owner's marker
//!   (`owned == false`) are never updated or deleted. A desired instance whose ID is
//!   taken by such an entry is not registered (it would overwrite a native
//!   registration); [`conflicts`] lists these.
//! * **Missing and ready → `Register`.** Missing and draining → nothing: a draining
//!   instance must not start receiving traffic, not even after a registry outage.
//! * **Present, ready, changed → `Update`** when the address, port, metadata or tags
//!   (where the registry has tags) differ, or when the registry shows it neither up nor
//!   out of service (a failed check, an unknown Eureka status): the applier re-registers.
//! * **Present, ready, out of service → `PutBack`.**
//! * **Present, draining, not out of service → `TakeOut`.** A draining entry is never
//!   re-registered for a field change: it is on its way out.
//! * **Owned but not desired → `Deregister`**: instances that stopped, and orphans left
//!   by instances that died while the registry was unreachable. An owned entry of the
//!   same ID under another service is deregistered too (the service was renamed).
//!
//! Services are compared case-insensitively (Eureka upper-cases app names). The output
//! is ordered so traffic never drops for nothing: take-outs first, then registrations
//! and updates, then put-backs, then deregistrations; within a phase by service and ID.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::{ser_status, DesiredRegistration, ObservedRegistration};
use crate::model::InstanceStatus;

/// A field that differs between desired and observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Address.
    Address,
    /// Port.
    Port,
    /// Metadata / Meta.
    Metadata,
    /// Consul tags.
    Tags,
    /// The registry shows the instance down or in an unknown state.
    Status,
}

/// Why an entry is deregistered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeregisterReason {
    /// Not desired any more: the instance stopped, or died while the registry was away.
    NotDesired,
    /// The same instance ID is desired under another service.
    ServiceChanged,
}

/// One change to make in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryOp {
    /// Register a missing instance.
    Register {
        /// What to register.
        registration: DesiredRegistration,
    },
    /// Re-register an instance whose fields changed.
    Update {
        /// What it should be.
        registration: DesiredRegistration,
        /// What differed.
        changed: Vec<Field>,
        /// The status the registry showed, so the applier can lift a take-out.
        #[serde(serialize_with = "ser_status")]
        previous_status: InstanceStatus,
    },
    /// Take a draining instance out of traffic (Eureka `OUT_OF_SERVICE` override, Consul
    /// maintenance).
    TakeOut {
        /// Service name as observed.
        service: String,
        /// Instance ID.
        instance_id: String,
    },
    /// Put an instance back into traffic (remove the override / maintenance).
    PutBack {
        /// Service name as observed.
        service: String,
        /// Instance ID.
        instance_id: String,
    },
    /// Remove an owned entry.
    Deregister {
        /// Service name as observed.
        service: String,
        /// Instance ID.
        instance_id: String,
        /// Why.
        reason: DeregisterReason,
    },
}

impl RegistryOp {
    /// The instance the operation is about.
    pub fn instance_id(&self) -> &str {
        match self {
            Self::Register { registration } | Self::Update { registration, .. } => {
                &registration.instance_id
            }
            Self::TakeOut { instance_id, .. }
            | Self::PutBack { instance_id, .. }
            | Self::Deregister { instance_id, .. } => instance_id,
        }
    }

    /// The service the operation is about.
    pub fn service(&self) -> &str {
        match self {
            Self::Register { registration } | Self::Update { registration, .. } => {
                &registration.service
            }
            Self::TakeOut { service, .. }
            | Self::PutBack { service, .. }
            | Self::Deregister { service, .. } => service,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Update { .. } => "update",
            Self::TakeOut { .. } => "take_out",
            Self::PutBack { .. } => "put_back",
            Self::Deregister { .. } => "deregister",
        }
    }

    fn phase(&self) -> u8 {
        match self {
            Self::TakeOut { .. } => 0,
            Self::Register { .. } | Self::Update { .. } => 1,
            Self::PutBack { .. } => 2,
            Self::Deregister { .. } => 3,
        }
    }
}

fn same_service(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn changed_fields(d: &DesiredRegistration, o: &ObservedRegistration) -> Vec<Field> {
    let mut changed = Vec::new();
    if d.address != o.address {
        changed.push(Field::Address);
    }
    if d.port != o.port {
        changed.push(Field::Port);
    }
    if d.metadata != o.metadata {
        changed.push(Field::Metadata);
    }
    if o.tags.as_ref().is_some_and(|tags| *tags != d.tags) {
        changed.push(Field::Tags);
    }
    if !matches!(o.status, InstanceStatus::Up | InstanceStatus::OutOfService) {
        changed.push(Field::Status);
    }
    changed
}

/// The first desired registration per instance ID (later duplicates are ignored).
fn unique(desired: &[DesiredRegistration]) -> Vec<&DesiredRegistration> {
    let mut seen = BTreeSet::new();
    desired
        .iter()
        .filter(|d| seen.insert(d.instance_id.as_str()))
        .collect()
}

/// The operations that make the owned entries in `observed` match `desired`.
pub fn diff(desired: &[DesiredRegistration], observed: &[ObservedRegistration]) -> Vec<RegistryOp> {
    let mut owned: BTreeMap<&str, Vec<&ObservedRegistration>> = BTreeMap::new();
    let mut foreign: BTreeSet<&str> = BTreeSet::new();
    for o in observed {
        if o.owned {
            owned.entry(o.instance_id.as_str()).or_default().push(o);
        } else {
            foreign.insert(o.instance_id.as_str());
        }
    }
    let desired = unique(desired);
    let desired_ids: BTreeSet<&str> = desired.iter().map(|d| d.instance_id.as_str()).collect();
    let mut ops = Vec::new();

    for d in &desired {
        let entries = owned
            .get(d.instance_id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let current = entries
            .iter()
            .find(|o| same_service(&o.service, &d.service));
        for moved in entries
            .iter()
            .filter(|o| !same_service(&o.service, &d.service))
        {
            ops.push(RegistryOp::Deregister {
                service: moved.service.clone(),
                instance_id: moved.instance_id.clone(),
                reason: DeregisterReason::ServiceChanged,
            });
        }
        match current {
            None => {
                if d.is_up() && !foreign.contains(d.instance_id.as_str()) {
                    ops.push(RegistryOp::Register {
                        registration: (*d).clone(),
                    });
                }
            }
            Some(o) if d.is_up() => {
                let changed = changed_fields(d, o);
                if !changed.is_empty() {
                    ops.push(RegistryOp::Update {
                        registration: (*d).clone(),
                        changed,
                        previous_status: o.status,
                    });
                } else if o.status == InstanceStatus::OutOfService {
                    ops.push(RegistryOp::PutBack {
                        service: o.service.clone(),
                        instance_id: o.instance_id.clone(),
                    });
                }
            }
            Some(o) => {
                if o.status != InstanceStatus::OutOfService {
                    ops.push(RegistryOp::TakeOut {
                        service: o.service.clone(),
                        instance_id: o.instance_id.clone(),
                    });
                }
            }
        }
    }

    for (id, entries) in &owned {
        if desired_ids.contains(id) {
            continue;
        }
        for o in entries {
            ops.push(RegistryOp::Deregister {
                service: o.service.clone(),
                instance_id: o.instance_id.clone(),
                reason: DeregisterReason::NotDesired,
            });
        }
    }

    ops.sort_by(|a, b| {
        (a.phase(), a.service().to_lowercase(), a.instance_id()).cmp(&(
            b.phase(),
            b.service().to_lowercase(),
            b.instance_id(),
        ))
    });
    ops
}

/// Desired instance IDs that are not registered because an entry the owner does not own
/// already uses the ID.
pub fn conflicts(
    desired: &[DesiredRegistration],
    observed: &[ObservedRegistration],
) -> Vec<String> {
    let owned: BTreeSet<&str> = observed
        .iter()
        .filter(|o| o.owned)
        .map(|o| o.instance_id.as_str())
        .collect();
    let foreign: BTreeSet<&str> = observed
        .iter()
        .filter(|o| !o.owned)
        .map(|o| o.instance_id.as_str())
        .collect();
    unique(desired)
        .into_iter()
        .filter(|d| {
            let id = d.instance_id.as_str();
            d.is_up() && foreign.contains(id) && !owned.contains(id)
        })
        .map(|d| d.instance_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(id: &str) -> DesiredRegistration {
        DesiredRegistration {
            service: "order".into(),
            instance_id: id.into(),
            address: "10.0.0.1".into(),
            port: 8080,
            metadata: BTreeMap::from([
                ("lane".to_owned(), "stable".to_owned()),
                ("tideway-managed".to_owned(), "true".to_owned()),
            ]),
            tags: vec!["v1".into()],
            status: InstanceStatus::Up,
            health_url: None,
        }
    }

    fn observed(d: &DesiredRegistration) -> ObservedRegistration {
        ObservedRegistration {
            service: d.service.to_uppercase(),
            instance_id: d.instance_id.clone(),
            address: d.address.clone(),
            port: d.port,
            metadata: d.metadata.clone(),
            tags: Some(d.tags.clone()),
            status: InstanceStatus::Up,
            owned: true,
        }
    }

    fn kinds(ops: &[RegistryOp]) -> Vec<(String, String)> {
        ops.iter()
            .map(|o| (o.kind().to_owned(), o.instance_id().to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn in_sync_means_no_ops() {
        let d = vec![desired("a"), desired("b")];
        let o: Vec<_> = d.iter().map(observed).collect();
        assert!(diff(&d, &o).is_empty());
    }

    #[test]
    fn registers_missing_ready_instances_only() {
        let d = vec![desired("a"), desired("b").draining()];
        let ops = diff(&d, &[]);
        assert_eq!(kinds(&ops), pairs(&[("register", "a")]));
    }

    #[test]
    fn updates_changed_fields_and_lifts_take_outs() {
        let mut moved = desired("a");
        moved.port = 9090;
        moved.metadata.insert("lane".into(), "canary".into());
        let mut o = observed(&desired("a"));
        o.status = InstanceStatus::OutOfService;
        let ops = diff(std::slice::from_ref(&moved), &[o]);
        assert_eq!(
            ops,
            vec![RegistryOp::Update {
                registration: moved,
                changed: vec![Field::Port, Field::Metadata],
                previous_status: InstanceStatus::OutOfService,
            }]
        );
    }

    #[test]
    fn tags_compare_only_where_the_registry_has_them() {
        let mut d = desired("a");
        d.tags = vec!["v2".into()];
        let mut eureka = observed(&desired("a"));
        eureka.tags = None;
        assert!(diff(std::slice::from_ref(&d), &[eureka]).is_empty());
        let consul = observed(&desired("a"));
        assert_eq!(kinds(&diff(&[d], &[consul])), pairs(&[("update", "a")]));
    }

    #[test]
    fn down_entries_are_re_registered_and_out_of_service_ones_put_back() {
        let mut down = observed(&desired("a"));
        down.status = InstanceStatus::Down;
        let mut oos = observed(&desired("b"));
        oos.status = InstanceStatus::OutOfService;
        let ops = diff(&[desired("a"), desired("b")], &[down, oos]);
        assert_eq!(kinds(&ops), pairs(&[("update", "a"), ("put_back", "b")]));
        match &ops[0] {
            RegistryOp::Update { changed, .. } => assert_eq!(changed, &[Field::Status]),
            other => panic!("expected an update, got {other:?}"),
        }
    }

    #[test]
    fn draining_instances_are_taken_out_once_and_never_updated() {
        let mut d = desired("a").draining();
        d.port = 1;
        let up = observed(&desired("a"));
        assert_eq!(
            kinds(&diff(std::slice::from_ref(&d), &[up])),
            pairs(&[("take_out", "a")])
        );
        let mut taken_out = observed(&desired("a"));
        taken_out.status = InstanceStatus::OutOfService;
        assert!(diff(&[d], &[taken_out]).is_empty());
    }

    #[test]
    fn deregisters_gone_instances_and_orphans() {
        let o = vec![observed(&desired("a")), observed(&desired("orphan"))];
        let ops = diff(&[desired("a")], &o);
        assert_eq!(
            ops,
            vec![RegistryOp::Deregister {
                service: "ORDER".into(),
                instance_id: "orphan".into(),
                reason: DeregisterReason::NotDesired,
            }]
        );
    }

    #[test]
    fn never_touches_entries_it_does_not_own() {
        let mut native = observed(&desired("native"));
        native.owned = false;
        native.status = InstanceStatus::Down;
        let mut clash = observed(&desired("a"));
        clash.owned = false;
        clash.port = 1;
        let d = vec![desired("a")];
        let o = vec![native, clash];
        assert!(diff(&d, &o).is_empty());
        assert_eq!(conflicts(&d, &o), vec!["a".to_owned()]);
    }

    #[test]
    fn service_rename_deregisters_the_old_entry_and_registers_the_new() {
        let mut old = observed(&desired("a"));
        old.service = "LEGACY".into();
        let ops = diff(&[desired("a")], &[old]);
        assert_eq!(
            kinds(&ops),
            pairs(&[("register", "a"), ("deregister", "a")])
        );
        assert_eq!(ops[1].service(), "LEGACY");
    }

    #[test]
    fn ops_are_ordered_take_out_register_put_back_deregister() {
        let mut oos = observed(&desired("p"));
        oos.status = InstanceStatus::OutOfService;
        let d = vec![desired("n"), desired("t").draining(), desired("p")];
        let o = vec![observed(&desired("t")), oos, observed(&desired("gone"))];
        assert_eq!(
            kinds(&diff(&d, &o)),
            pairs(&[
                ("take_out", "t"),
                ("register", "n"),
                ("put_back", "p"),
                ("deregister", "gone")
            ])
        );
    }

    #[test]
    fn duplicate_desired_ids_use_the_first() {
        let mut second = desired("a");
        second.port = 1;
        let ops = diff(&[desired("a"), second], &[]);
        assert_eq!(ops.len(), 1);
        match &ops[0] {
            RegistryOp::Register { registration } => assert_eq!(registration.port, 8080),
            other => panic!("expected a register, got {other:?}"),
        }
    }
}

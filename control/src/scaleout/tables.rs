//! Fingerprints of the consistent-hash (Maglev) tables a snapshot forwards by, so boxes
//! behind one ECMP group can be compared: equal fingerprints mean every slot names the same
//! real server on both boxes, hence any box picks the same real server for a flow it holds
//! no state for. A fingerprint covers the table's content in real-server terms (address and
//! port of each slot's owner), not box-local ids or slots.

use crate::config::{Proto, ServiceKey};
use serde::Serialize;
use vipd_dataplane::sched::ServiceScheduler;
use vipd_dataplane::snapshot::{backend_key, FlowHashFields, Service, Snapshot};
use xxhash_rust::xxh3::Xxh3;

/// One service's consistent-hash table, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFingerprint {
    /// The service.
    #[serde(serialize_with = "crate::scaleout::display")]
    pub service: ServiceKey,
    /// Its scheduler (`maglev`; for `rr`/`wrr` the table is the one used for flows that
    /// have no entry).
    pub scheduler: &'static str,
    /// Table size M.
    pub size: u32,
    /// Real servers owning slots.
    pub real_servers: usize,
    /// 128-bit hash of the slots' owners (address and port), in hex.
    pub fingerprint: String,
}

/// The fingerprint of every service that has a table (services without a schedulable real
/// server have none), in snapshot order.
pub fn fingerprints(snap: &Snapshot) -> Vec<TableFingerprint> {
    snap.services
        .iter()
        .filter_map(|s| fingerprint(snap, s))
        .collect()
}

fn fingerprint(snap: &Snapshot, s: &Service) -> Option<TableFingerprint> {
    let table = match s.fallback.as_ref().or(s.scheduler.as_ref())? {
        ServiceScheduler::Maglev(t) => t,
        _ => return None,
    };
    let proto = Proto::from_number(s.proto)?;
    let keys: Vec<[u8; 18]> = s
        .scheduled
        .iter()
        .map(|&id| {
            snap.backend(id)
                .map_or([0; 18], |b| backend_key(b.addr, b.port))
        })
        .collect();
    let mut h = Xxh3::new();
    // Boxes hashing other fields pick other real servers from the same slots. A 5-tuple
    // table's fingerprint stays what it was before `hash` existed (boxes being upgraded).
    if s.hash == FlowHashFields::ThreeTuple {
        h.update(s.hash.name().as_bytes());
    }
    h.update(&table.size().to_be_bytes());
    for owner in table.entries() {
        h.update(keys.get(owner as usize).unwrap_or(&[0; 18]));
    }
    Some(TableFingerprint {
        service: ServiceKey {
            vip: s.vip,
            proto,
            port: s.port,
        },
        scheduler: s.scheduler.as_ref().map_or("maglev", |x| x.kind().as_str()),
        size: table.size(),
        real_servers: keys.len(),
        fingerprint: format!("{:032x}", h.digest128()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::IpAddr;
    use vipd_dataplane::sched::SchedulerKind;
    use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec};

    fn port() -> PortInfo {
        PortInfo {
            ipv4: Some("10.0.0.10/24".parse().unwrap()),
            ..PortInfo::default()
        }
    }

    fn service(scheduler: SchedulerKind, rs: &[(&str, u32, u32)]) -> ServiceSpec {
        ServiceSpec {
            vip: "10.0.100.1".parse().unwrap(),
            proto: 6,
            port: 80,
            scheduler,
            drop_dead_flows: true,
            hash: FlowHashFields::FiveTuple,
            local_pool: Default::default(),
            sched_flags: Default::default(),
            persistence: None,
            backends: rs
                .iter()
                .map(|&(ip, weight, id)| BackendSpec {
                    id,
                    addr: ip.parse::<IpAddr>().unwrap(),
                    port: 80,
                    weight,
                    mode: FwdMode::Dr,
                    ..BackendSpec::default()
                })
                .collect(),
        }
    }

    fn print(spec: ServiceSpec) -> Vec<TableFingerprint> {
        let snap = Snapshot::build(1, vec![port()], &[spec], &HashMap::new(), 4099).unwrap();
        fingerprints(&snap)
    }

    #[test]
    fn same_servers_same_fingerprint_whatever_the_order_and_ids() {
        let a = print(service(
            SchedulerKind::Maglev,
            &[
                ("10.0.0.21", 1, 0),
                ("10.0.0.22", 2, 1),
                ("10.0.0.23", 1, 2),
            ],
        ));
        let b = print(service(
            SchedulerKind::Maglev,
            &[
                ("10.0.0.23", 1, 7),
                ("10.0.0.21", 1, 3),
                ("10.0.0.22", 2, 5),
            ],
        ));
        assert_eq!(a, b);
        assert_eq!(a[0].real_servers, 3);
        assert_eq!(a[0].fingerprint.len(), 32);
    }

    #[test]
    fn another_weight_or_server_another_fingerprint() {
        let base = print(service(
            SchedulerKind::Maglev,
            &[("10.0.0.21", 1, 0), ("10.0.0.22", 1, 1)],
        ));
        let weight = print(service(
            SchedulerKind::Maglev,
            &[("10.0.0.21", 1, 0), ("10.0.0.22", 2, 1)],
        ));
        let server = print(service(
            SchedulerKind::Maglev,
            &[("10.0.0.21", 1, 0), ("10.0.0.24", 1, 1)],
        ));
        let three_tuple = print(ServiceSpec {
            hash: FlowHashFields::ThreeTuple,
            ..service(
                SchedulerKind::Maglev,
                &[("10.0.0.21", 1, 0), ("10.0.0.22", 1, 1)],
            )
        });
        assert_ne!(base[0].fingerprint, weight[0].fingerprint);
        assert_ne!(base[0].fingerprint, server[0].fingerprint);
        assert_ne!(
            base[0].fingerprint, three_tuple[0].fingerprint,
            "the same slots hashed on other fields pick other real servers"
        );
    }

    #[test]
    fn rotating_schedulers_show_their_stateless_table() {
        let rr = print(service(
            SchedulerKind::Rr,
            &[("10.0.0.21", 1, 0), ("10.0.0.22", 1, 1)],
        ));
        let maglev = print(service(
            SchedulerKind::Maglev,
            &[("10.0.0.21", 1, 0), ("10.0.0.22", 1, 1)],
        ));
        assert_eq!(rr[0].scheduler, "rr");
        assert_eq!(rr[0].fingerprint, maglev[0].fingerprint);
        assert!(print(service(SchedulerKind::Maglev, &[("10.0.0.21", 0, 0)])).is_empty());
    }
}

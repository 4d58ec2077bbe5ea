//! What a reload (SIGHUP, `vipctl reload`) can change while vipd runs, and what needs a
//! restart: ports, queues, memory and threads are set up once at start. A reload that touches
//! a restart-only key is refused as a whole, naming each such key, so nothing is half-applied.

use super::model::Config;

/// The restart-only keys whose values differ between `old` and `new`, each as
/// `key (old -> new)`. Empty when the reload can be applied.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |key: String, a: String, b: String| {
        if a != b {
            out.push(format!("{key} ({a} -> {b})"));
        }
    };
    let (e, f) = (&old.eal, &new.eal);
    diff(
        "eal.file_prefix".into(),
        e.file_prefix.clone(),
        f.file_prefix.clone(),
    );
    diff(
        "eal.hugepages".into(),
        e.hugepages.to_string(),
        f.hugepages.to_string(),
    );
    diff(
        "eal.memory_mb".into(),
        e.memory_mb.to_string(),
        f.memory_mb.to_string(),
    );
    diff(
        "eal.extra_args".into(),
        format!("{:?}", e.extra_args),
        format!("{:?}", f.extra_args),
    );
    let (d, n) = (&old.dataplane, &new.dataplane);
    diff(
        "dataplane.worker_cores".into(),
        format!("{:?}", d.worker_cores),
        format!("{:?}", n.worker_cores),
    );
    diff(
        "dataplane.control_core".into(),
        d.control_core.to_string(),
        n.control_core.to_string(),
    );
    diff(
        "dataplane.idle_sleep_us".into(),
        d.idle_sleep_us.to_string(),
        n.idle_sleep_us.to_string(),
    );
    diff(
        "dataplane.rx_descriptors".into(),
        d.rx_descriptors.to_string(),
        n.rx_descriptors.to_string(),
    );
    diff(
        "dataplane.tx_descriptors".into(),
        d.tx_descriptors.to_string(),
        n.tx_descriptors.to_string(),
    );
    diff(
        "dataplane.mbufs".into(),
        d.mbufs.to_string(),
        n.mbufs.to_string(),
    );
    diff(
        "dataplane.max_real_servers".into(),
        d.max_real_servers.to_string(),
        n.max_real_servers.to_string(),
    );
    diff(
        "flows.fragment_slots".into(),
        old.flows.fragment_slots.to_string(),
        new.flows.fragment_slots.to_string(),
    );
    diff(
        "flows.capacity_per_worker".into(),
        old.flows.capacity_per_worker.to_string(),
        new.flows.capacity_per_worker.to_string(),
    );
    diff(
        "flows.capacity_per_worker_v6".into(),
        old.flows.v6_capacity().to_string(),
        new.flows.v6_capacity().to_string(),
    );
    diff(
        "flows.persistence_per_worker".into(),
        old.flows.persistence_per_worker.to_string(),
        new.flows.persistence_per_worker.to_string(),
    );
    diff(
        "api.listen".into(),
        old.api.listen.to_string(),
        new.api.listen.to_string(),
    );
    let (a, b) = (&old.api, &new.api);
    for (key, x, y) in [
        ("api.token_file", &a.token_file, &b.token_file),
        (
            "api.read_token_file",
            &a.read_token_file,
            &b.read_token_file,
        ),
        ("api.socket", &a.socket, &b.socket),
        (
            "api.tls_certificate",
            &a.tls_certificate,
            &b.tls_certificate,
        ),
        ("api.tls_key", &a.tls_key, &b.tls_key),
    ] {
        diff(key.into(), format!("{x:?}"), format!("{y:?}"));
    }
    diff(
        "api.max_connections".into(),
        a.max_connections.to_string(),
        b.max_connections.to_string(),
    );
    diff(
        "api.header_timeout".into(),
        a.header_timeout.to_string(),
        b.header_timeout.to_string(),
    );
    diff(
        "api.idle_timeout".into(),
        a.idle_timeout.to_string(),
        b.idle_timeout.to_string(),
    );
    diff(
        "state.file".into(),
        old.state.file.display().to_string(),
        new.state.file.display().to_string(),
    );
    match (&old.bgp, &new.bgp) {
        (Some(a), Some(b)) => {
            for ((key, x), (_, y)) in a.entries().into_iter().zip(b.entries()) {
                diff(format!("bgp.{key}"), x, y);
            }
        }
        (a, b) => {
            let state = |c: &Option<_>| if c.is_some() { "present" } else { "absent" };
            diff("[bgp]".into(), state(a).into(), state(b).into());
        }
    }
    diff(
        "ports".into(),
        format!("{} entries", old.ports.len()),
        format!("{} entries", new.ports.len()),
    );
    for (i, (p, q)) in old.ports.iter().zip(&new.ports).enumerate() {
        diff(format!("ports[{i}].name"), p.name.clone(), q.name.clone());
        diff(
            format!("ports[{i}].device"),
            p.device.clone(),
            q.device.clone(),
        );
        diff(
            format!("ports[{i}].mtu"),
            p.mtu.to_string(),
            q.mtu.to_string(),
        );
        diff(
            format!("ports[{i}].mac"),
            format!("{:?}", p.mac),
            format!("{:?}", q.mac),
        );
        diff(
            format!("ports[{i}].kernel_interface"),
            format!("{:?}", p.kernel_interface),
            format!("{:?}", q.kernel_interface),
        );
        // A VLAN's kernel interface, like the port's, is a tap created at start.
        let vlan_kernel = |p: &crate::config::model::PortConfig| {
            let mut v: Vec<_> = p
                .vlans
                .iter()
                .filter_map(|v| v.kernel_interface.as_ref().map(|n| (v.id, n.clone())))
                .collect();
            v.sort();
            format!("{v:?}")
        };
        diff(
            format!("ports[{i}].vlans[].kernel_interface"),
            vlan_kernel(p),
            vlan_kernel(q),
        );
        // A bond's members and mode are devices the EAL creates at start.
        diff(
            format!("ports[{i}].bond"),
            format!("{:?}", p.bond),
            format!("{:?}", q.bond),
        );
    }
    out
}

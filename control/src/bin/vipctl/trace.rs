//! `vipctl trace`: each traced connection as the four-step NAT table of the load-balancing
//! literature (step, process, source, destination), with the MACs vipd saw and wrote.

use serde_json::Value;
use std::fmt::Write;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The table of a `GET /api/v1/trace` answer.
pub fn table(v: &Value) -> String {
    let mut out = String::new();
    let conns = v["connections"]
        .as_array()
        .map_or(&[][..], |a| a.as_slice());
    let _ = writeln!(
        out,
        "vipd trace: {} s, {} frames examined, {} recorded{}, {} connection(s)",
        v["seconds"],
        v["frames_examined"],
        v["frames_recorded"],
        match v["frames_missed"].as_u64() {
            Some(0) | None => String::new(),
            Some(n) => format!(" ({n} more left out: narrow the filter or raise --limit)"),
        },
        conns.len()
    );
    for c in conns {
        let rs = match (c["real_server"].as_str(), c["forward"].as_str()) {
            (Some(r), Some(f)) => format!("real server {r} ({f})"),
            (Some(r), None) => format!("real server {r}"),
            _ => "no real server".into(),
        };
        let _ = writeln!(
            out,
            "\n{} {} -> {}  {rs}, worker {}",
            s(&c["proto"]).to_uppercase(),
            s(&c["client"]),
            s(&c["vip"]),
            c["worker"]
        );
        let _ = writeln!(
            out,
            "  {:<4} {:<24} {:<28} {:<28} {:<18} {:<18} {:>7}",
            "Step", "Process", "Source", "Destination", "Source MAC", "Destination MAC", "Packets"
        );
        for st in c["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<4} {:<24} {:<28} {:<28} {:<18} {:<18} {:>7}",
                st["step"].to_string(),
                s(&st["process"]),
                s(&st["source"]),
                s(&st["destination"]),
                s(&st["source_mac"]),
                s(&st["destination_mac"]),
                st["packets"].to_string()
            );
            if let Some(o) = st["outer"].as_object() {
                let _ = writeln!(
                    out,
                    "  {:<4} {:<24} {:<28} {:<28}",
                    "",
                    "  outer IP header",
                    o.get("source").and_then(Value::as_str).unwrap_or("-"),
                    o.get("destination").and_then(Value::as_str).unwrap_or("-")
                );
            }
            let d = s(&st["decision"]);
            if d.starts_with("dropped") {
                let _ = writeln!(out, "  {:<4} {:<24} {d}", "", "");
            }
        }
        for n in c["notes"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  note: {}", s(n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nat_connection_as_the_four_step_table() {
        let step = |n: u8, p: &str, src: &str, dst: &str, sm: &str, dm: &str| {
            json!({"step": n, "process": p, "source": src, "destination": dst,
                   "source_mac": sm, "destination_mac": dm, "outer": null, "port": 0,
                   "packets": 3, "decision": "sent on port 0"})
        };
        let v = json!({
            "seconds": 2.0, "frames_examined": 40, "frames_recorded": 12, "frames_missed": 0,
            "connections": [{
                "proto": "tcp", "client": "192.168.77.2:40000", "vip": "10.77.100.1:80",
                "worker": 0, "real_server": "10.77.0.21:8080", "forward": "Masq", "notes": [],
                "steps": [
                    step(1, "Client to load balancer", "192.168.77.2:40000", "10.77.100.1:80", "02:77:00:00:00:01", "02:77:00:00:00:0a"),
                    step(2, "Load balancer to server", "192.168.77.2:40000", "10.77.0.21:8080", "02:77:00:00:00:0a", "02:77:00:00:00:15"),
                    step(3, "Server to load balancer", "10.77.0.21:8080", "192.168.77.2:40000", "02:77:00:00:00:15", "02:77:00:00:00:0a"),
                    step(4, "Load balancer to client", "10.77.100.1:80", "192.168.77.2:40000", "02:77:00:00:00:0a", "02:77:00:00:00:01"),
                ],
            }],
        });
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "vipd trace: 2.0 s, 40 frames examined, 12 recorded, 1 connection(s)"
        );
        assert_eq!(lines[2], "TCP 192.168.77.2:40000 -> 10.77.100.1:80  real server 10.77.0.21:8080 (Masq), worker 0");
        assert!(lines[3].starts_with("  Step Process"), "{t}");
        assert!(
            lines[5].starts_with("  2    Load balancer to server  192.168.77.2:40000"),
            "{t}"
        );
        assert!(
            lines[7].contains("10.77.100.1:80               192.168.77.2:40000"),
            "{t}"
        );
    }
}

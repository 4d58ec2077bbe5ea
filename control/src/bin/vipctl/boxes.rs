//! `vipctl box` and `vipctl drain|resume --box`: the box's scale-out state as the API's
//! `/api/v1/box` gives it (docs/scale-out.md), in lines an operator reads at a glance.

use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    }
}

/// `vipctl box`.
pub fn status(v: &Value) -> String {
    let mut out = String::new();
    let state = if v["stopping"].as_bool() == Some(true) {
        "stopping"
    } else if v["drained"].as_bool() == Some(true) {
        "drained (vipctl resume --box announces again)"
    } else if v["forwarding"].as_bool() == Some(true) {
        "in service"
    } else {
        "starting (workers not forwarding yet)"
    };
    out.push_str(&format!("Box: {state}\n"));
    match &v["bgp"] {
        Value::Null => out.push_str("BGP: not configured (no [bgp] section)\n"),
        b => {
            let conn = if b["connected"].as_bool() == Some(true) {
                format!("connected to bird {}", text(&b["version"]))
            } else {
                "not connected".into()
            };
            out.push_str(&format!(
                "BGP: {} at {}, {conn}; protocols in {}\n",
                text(&b["daemon"]),
                text(&b["socket"]),
                text(&b["protocols_file"])
            ));
            if let Some(e) = b["last_error"].as_str() {
                out.push_str(&format!("     last error: {e}\n"));
            }
        }
    }
    out.push_str(&format!(
        "{:<40} {:<9} {:<8} {:<6} Why\n",
        "VIP", "Announce", "In bird", "RS"
    ));
    for vip in v["vips"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<40} {:<9} {:<8} {:<6} {}\n",
            text(&vip["vip"]),
            yes_no(&vip["announce"]),
            yes_no(&vip["announced"]),
            format!("{}/{}", vip["real_servers_ready"], vip["real_servers"]),
            text(&vip["reason"])
        ));
    }
    let tables = v["tables"].as_array().into_iter().flatten();
    for (i, t) in tables.enumerate() {
        if i == 0 {
            out.push_str(
                "Consistent-hash tables (equal fingerprints on every box of one ECMP group):\n",
            );
        }
        out.push_str(&format!(
            "  {:<38} {} {} entries over {} real server(s), fingerprint {}\n",
            text(&t["service"]),
            text(&t["scheduler"]),
            t["size"],
            t["real_servers"],
            text(&t["fingerprint"])
        ));
    }
    out
}

/// The answer to `drain --box` / `resume --box`.
pub fn switched(v: &Value) -> String {
    let b = &v["box"];
    let announced: Vec<String> = b["announced"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let ms = b["elapsed_ms"].as_f64().unwrap_or(0.0);
    if b["drained"].as_bool() == Some(true) {
        format!("vipd: box drained: every VIP withdrawn ({ms:.1} ms); forwarding continues\n")
    } else if announced.is_empty() {
        format!(
            "vipd: box resumed: no VIP can be announced yet (vipctl box says why) ({ms:.1} ms)\n"
        )
    } else {
        format!(
            "vipd: box resumed: {} announced ({ms:.1} ms)\n",
            announced.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_lines() {
        let v = json!({
            "drained": false, "stopping": false, "forwarding": true, "generation": 4,
            "bgp": {"daemon": "bird", "socket": "/run/bird/bird.ctl", "protocols_file": "/var/lib/vipd/bird-vips.conf",
                    "connected": true, "version": "2.0.12", "last_error": null, "commands": 3, "errors": 0},
            "vips": [{"vip": "10.77.100.1", "protocol": "vipd_10_77_100_1", "announce": true, "announced": true,
                      "reason": "3 of 3 real server(s) up", "real_servers_ready": 3, "real_servers": 3}],
            "tables": [{"service": "tcp 10.77.100.1:80", "scheduler": "maglev", "size": 65537,
                        "real_servers": 3, "fingerprint": "00ff"}]
        });
        let out = status(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Box: in service");
        assert_eq!(
            lines[1],
            "BGP: bird at /run/bird/bird.ctl, connected to bird 2.0.12; protocols in /var/lib/vipd/bird-vips.conf"
        );
        assert!(lines[3].starts_with("10.77.100.1 "), "{out}");
        assert!(
            lines[3].contains(" yes       yes      3/3    3 of 3 real server(s) up"),
            "{out}"
        );
        assert!(
            lines[5].contains("tcp 10.77.100.1:80") && lines[5].ends_with("fingerprint 00ff"),
            "{out}"
        );
        let none = status(&json!({"drained": true, "bgp": null, "vips": [], "tables": []}));
        assert!(
            none.starts_with("Box: drained") && none.contains("BGP: not configured"),
            "{none}"
        );
    }

    #[test]
    fn switch_answers() {
        assert_eq!(
            switched(
                &json!({"ok": true, "box": {"drained": true, "announced": [], "elapsed_ms": 3.25}})
            ),
            "vipd: box drained: every VIP withdrawn (3.2 ms); forwarding continues\n"
        );
        assert_eq!(
            switched(
                &json!({"ok": true, "box": {"drained": false, "announced": ["10.77.100.1"], "elapsed_ms": 2.0}})
            ),
            "vipd: box resumed: 10.77.100.1 announced (2.0 ms)\n"
        );
    }
}

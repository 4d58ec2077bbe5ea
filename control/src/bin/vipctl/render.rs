//! The tables vipctl prints, from the API's JSON: ipvsadm's layouts (`-L -n`, `--stats`,
//! `--rate`, `-c`, `--timeout`) with vipd's additions at the ends of lines (the health column),
//! and vipd's own views (health, status, stats). Pure functions of the JSON, so they are tested
//! on literal answers.

use crate::action::Table;
use serde_json::Value;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Width of ipvsadm's `Prot LocalAddress:Port` column in the statistics tables.
const SERVICE_WIDTH: usize = 33;
/// Width of ipvsadm's `RemoteAddress:Port` column.
const SERVER_WIDTH: usize = 28;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .or_else(|| v[k].as_f64().map(|f| f.max(0.0).round() as u64))
        .unwrap_or(0)
}

/// `TCP  10.0.0.1:80`, ipvsadm's service name.
fn service_name(v: &Value) -> String {
    format!("{}  {}", s(v, "proto").to_uppercase(), s(v, "address"))
}

/// ipvsadm's `print_largenum`: right-aligned in 9 columns, scaled to K/M/G/T unless `exact`.
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let digits = i.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    match i {
        0..=99_999_999 => format!("{i:>9}"),
        100_000_000..=999_999_999 => format!("{:>8}K", i / 1_000),
        1_000_000_000..=99_999_999_999 => format!("{:>8}M", i / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => format!("{:>8}G", i / 1_000_000_000),
        _ => format!("{:>8}T", i / 1_000_000_000_000),
    }
}

/// The first line of `-L`: ipvsadm's `IP Virtual Server version ... (size=...)`.
pub fn list_heading(all: &Value) -> String {
    let version = match all["version"].as_str() {
        Some(v) => format!("vipd version {v}"),
        None => "vipd".to_string(),
    };
    let unsaved = n(all, "unsaved_changes");
    let mut line = format!(
        "{version} (size={}, generation={}",
        n(all, "flow_capacity"),
        n(all, "generation")
    );
    if unsaved > 0 {
        let _ = write!(line, ", {unsaved} change(s) not saved");
    }
    line.push_str(")\n");
    line
}

fn title(table: Table) -> String {
    let columns = |a: [&str; 5]| {
        let mut t = format!("{:<SERVICE_WIDTH$}", "Prot LocalAddress:Port");
        for c in a {
            let _ = write!(t, " {c:>8}");
        }
        t + "\n  -> RemoteAddress:Port\n"
    };
    match table {
        Table::Plain => "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  Health\n".into(),
        Table::Stats => columns(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        Table::Rate => columns(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        // ipvsadm's print_title for FMT_THRESHOLDS and FMT_PERSISTENTCONN.
        Table::Thresholds => format!(
            "{:<SERVICE_WIDTH$} {:<10} {:<10} {:<10} {}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        Table::PersistConn => format!(
            "{:<SERVICE_WIDTH$} {:<9} {:<11} {:<10} {}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
    }
}

fn health_cell(rs: &Value) -> String {
    let state = match s(&rs["health"], "state") {
        "up" => "up",
        "down" => "down",
        _ => "-",
    };
    if rs["sorry"].as_bool() == Some(true) {
        format!("{state} sorry")
    } else {
        state.to_string()
    }
}

const STATS: [&str; 5] = ["conns", "inpkts", "outpkts", "inbytes", "outbytes"];
const RATES: [&str; 5] = ["cps", "inpps", "outpps", "inbps", "outbps"];

/// The five figures of a `--stats` or `--rate` line of a service or real server.
fn figures(v: &Value, table: Table, exact: bool) -> String {
    let (part, keys) = match table {
        Table::Rate => ("rates", RATES),
        _ => ("stats", STATS),
    };
    keys.iter()
        .map(|k| largenum(n(&v[part], k), exact))
        .collect()
}

/// The scheduler's flags and persistence as ipvsadm prints them after the scheduler:
/// ` (sh-fallback,sh-port) persistent 300 mask 255.255.255.0` (the mask only when not the
/// whole address).
fn sched_and_persistence(svc: &Value) -> String {
    let mut t = String::new();
    let flags: Vec<&str> = svc["scheduler_flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !flags.is_empty() {
        let _ = write!(t, " ({})", flags.join(","));
    }
    let p = &svc["persistence"];
    if p.is_object() {
        let _ = write!(t, " persistent {}", n(p, "timeout_s"));
        let v6 = s(svc, "vip").contains(':');
        let whole = if v6 { 128 } else { 32 };
        if n(p, "prefix_len") != whole {
            let _ = write!(t, " mask {}", s(p, "netmask"));
        }
    }
    t
}

fn service_entry(out: &mut String, svc: &Value, table: Table, exact: bool) {
    let name = service_name(svc);
    if matches!(table, Table::Plain | Table::Thresholds | Table::PersistConn) {
        let _ = write!(
            out,
            "{name} {}{}",
            s(svc, "scheduler"),
            sched_and_persistence(svc)
        );
        if s(svc, "dead_flows") == "keep" {
            out.push_str(" keep-dead-flows");
        }
        if s(svc, "hash") == "3-tuple" {
            out.push_str(" 3-tuple-hash");
        }
        if svc["schedulable"].as_bool() == Some(false) {
            out.push_str(" no-server-available");
        }
        out.push('\n');
    } else {
        let _ = writeln!(out, "{name:<SERVICE_WIDTH$}{}", figures(svc, table, exact));
    }
    for rs in svc["real_servers"].as_array().into_iter().flatten() {
        let addr = s(rs, "address");
        if table == Table::Plain {
            let _ = writeln!(
                out,
                "  -> {addr:<SERVER_WIDTH$} {:<7} {:<6} {:<10} {:<10} {}",
                s(rs, "forward"),
                n(rs, "weight"),
                n(rs, "active_conns"),
                n(rs, "inactive_conns"),
                health_cell(rs)
            );
        } else if table == Table::Thresholds {
            let line = format!(
                "  -> {addr:<SERVER_WIDTH$} {:<10} {:<10} {:<10} {:<10}",
                n(rs, "upper_threshold"),
                n(rs, "lower_threshold"),
                n(rs, "active_conns"),
                n(rs, "inactive_conns"),
            );
            let _ = writeln!(out, "{}", line.trim_end());
        } else if table == Table::PersistConn {
            let line = format!(
                "  -> {addr:<SERVER_WIDTH$} {:<9} {:<11} {:<10} {:<10}",
                n(rs, "weight"),
                n(rs, "persistent_conns"),
                n(rs, "active_conns"),
                n(rs, "inactive_conns"),
            );
            let _ = writeln!(out, "{}", line.trim_end());
        } else {
            let _ = writeln!(
                out,
                "  -> {addr:<SERVER_WIDTH$}{}",
                figures(rs, table, exact)
            );
        }
    }
}

/// `-L` of every service (`GET /api/v1/services`).
pub fn services(all: &Value, table: Table, exact: bool) -> String {
    let mut out = list_heading(all);
    out += &title(table);
    for svc in all["services"].as_array().into_iter().flatten() {
        service_entry(&mut out, svc, table, exact);
    }
    out
}

/// `-L -t VIP:PORT` (`GET /api/v1/services/{proto}/{vip}/{port}`): no heading line, as ipvsadm.
pub fn service(svc: &Value, table: Table, exact: bool) -> String {
    let mut out = title(table);
    service_entry(&mut out, svc, table, exact);
    out
}

/// `-L -c` (`GET /api/v1/connections`): ipvsadm's connection list.
pub fn connections(v: &Value) -> String {
    let list = v["connections"].as_array().map_or(&[][..], |a| &a[..]);
    let what = if v["persistent"].as_bool() == Some(true) {
        "persistence"
    } else {
        "connection"
    };
    let mut out = format!("vipd {what} entries ({} sampled", list.len());
    if v["truncated"].as_bool() == Some(true) {
        out += "; more exist: narrow with -t, --client or -r, or raise --limit";
    }
    out += ")\n";
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in list {
        let secs = c["expires_s"].as_f64().unwrap_or(0.0).max(0.0) as u64;
        // UDP flows have no state of their own; ipvsadm shows them as `UDP`.
        let state = match (s(c, "proto"), s(c, "state")) {
            // A persistence entry (IPVS's template) has no state of its own: NONE.
            _ if what == "persistence" => "NONE".to_string(),
            ("udp", "none") => "UDP".to_string(),
            (_, st) => st.to_uppercase(),
        };
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            s(c, "proto").to_uppercase(),
            format!("{:02}:{:02}", secs / 60, secs % 60),
            state,
            s(c, "client"),
            s(c, "vip"),
            s(c, "real_server")
        );
        if let Some(local) = c["local"].as_str() {
            // Full-NAT: what the real server sees as its client, after the destination.
            out.pop();
            let _ = writeln!(out, " local {local}");
        }
    }
    out
}

/// `-L --timeout` (`GET /api/v1/timeouts`): ipvsadm's line, then vipd's other timeouts.
pub fn timeouts(t: &Value) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\nTimeout (tcpsyn tcptimewait tcpclose): {} {} {}\n",
        n(t, "tcp_established"),
        n(t, "tcp_fin"),
        n(t, "udp"),
        n(t, "tcp_syn"),
        n(t, "tcp_time_wait"),
        n(t, "tcp_close"),
    )
}

/// `tcp/10.0.0.1/80` as `TCP  10.0.0.1:80`.
fn service_of_path(path: &str) -> String {
    let mut parts = path.splitn(3, '/');
    let (proto, ip, port) = (parts.next(), parts.next(), parts.next());
    match (
        proto,
        ip.and_then(|i| i.parse::<IpAddr>().ok()),
        port.and_then(|p| p.parse::<u16>().ok()),
    ) {
        (Some(proto), Some(ip), Some(port)) => {
            format!("{}  {}", proto.to_uppercase(), SocketAddr::new(ip, port))
        }
        _ => path.to_string(),
    }
}

fn check_text(c: &Value) -> String {
    if c.is_null() {
        return "none".into();
    }
    let mut t = s(c, "type").to_string();
    if t == "http" {
        let _ = write!(t, " GET {} ={}", s(c, "path"), n(c, "status"));
        if let Some(h) = c["host"].as_str() {
            let _ = write!(t, " Host:{h}");
        }
    }
    let _ = write!(
        t,
        " {} every {}s timeout {}s rise {} fall {}",
        s(c, "target"),
        c["interval_s"].as_f64().unwrap_or(0.0),
        c["timeout_s"].as_f64().unwrap_or(0.0),
        n(c, "rise"),
        n(c, "fall")
    );
    t
}

/// How long ago `ms` (Unix milliseconds) was, for people: `45s`, `12m`, `3h`, `2d`.
pub fn ago(ms: u64, now_ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7_199 => format!("{}m", secs / 60),
        7_200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `vipctl health` (`GET /api/v1/health`), grouped by service like `-L`; `only` keeps one
/// service (its API path).
pub fn health(v: &Value, only: Option<&str>, now_ms: u64) -> String {
    let mut out = String::new();
    // The box's own faults and the guard's holds first: they explain the table.
    let local = &v["local_faults"];
    if n(local, "failing_locally") > 0 {
        let classes: Vec<String> = local["classes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, c)| n(c, "real_servers") > 0)
            .map(|(name, c)| format!("{name} ({})", s(c, "last_detail")))
            .collect();
        let _ = writeln!(
            out,
            "The box itself: {} real server(s) could not be checked: {}; they keep their state",
            n(local, "failing_locally"),
            classes.join(", ")
        );
    }
    let held: u64 = v["guard"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| n(g, "held"))
        .sum();
    if held > 0 {
        let _ = writeln!(
            out,
            "Held: {held} down verdict(s), more than {} % of a service failing within one interval: they keep their traffic (vipctl health --release applies them)",
            n(&v["guard"], "max_down_percent")
        );
    }
    out += "Prot LocalAddress:Port\n  -> RemoteAddress:Port           State  Checks  Failed Changes    Since Last outcome / check\n";
    let mut current = None;
    for r in v["real_servers"].as_array().into_iter().flatten() {
        let svc = s(r, "service");
        if only.is_some_and(|o| o != svc) {
            continue;
        }
        if current != Some(svc) {
            current = Some(svc);
            let _ = writeln!(out, "{}", service_of_path(svc));
        }
        let h = &r["health"];
        let state = match s(h, "state") {
            "unchecked" => "-",
            _ if h["held"].is_object() => "held",
            other => other,
        };
        let line = if state == "-" {
            format!(
                "  -> {:<SERVER_WIDTH$} {state:<5} {:>7} {:>7} {:>7} {:>8} unchecked",
                s(r, "real_server"),
                "-",
                "-",
                "-",
                "-"
            )
        } else {
            let outcome = match h["last_outcome"].as_str() {
                Some("") | None => "(no check yet)",
                Some(o) => o,
            };
            format!(
                "  -> {:<SERVER_WIDTH$} {state:<5} {:>7} {:>7} {:>7} {:>8} {outcome} / {}",
                s(r, "real_server"),
                n(h, "checks"),
                n(h, "failures"),
                n(h, "transitions"),
                ago(n(h, "last_transition_ms"), now_ms),
                check_text(&r["check"])
            )
        };
        out += line.trim_end();
        out.push('\n');
    }
    out
}

/// `vipctl health --release`: the real servers taken down.
pub fn released(v: &Value) -> String {
    let list: Vec<&str> = v["released"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| s(r, "real_server"))
        .collect();
    if list.is_empty() {
        return "vipd: no down verdict was held\n".into();
    }
    format!(
        "vipd: {} held down verdict(s) applied: {}\n",
        list.len(),
        list.join(", ")
    )
}

/// `vipctl status` (`GET /api/v1/status`).
pub fn status(v: &Value) -> String {
    let mut out = format!(
        "vipd: generation {}, {} worker(s), configuration {}",
        n(v, "generation"),
        n(v, "workers"),
        s(v, "config")
    );
    let unsaved = n(v, "unsaved_changes");
    if unsaved > 0 {
        let _ = write!(out, " ({unsaved} API change(s) not saved: vipctl -S)");
    }
    out.push('\n');
    let slots = &v["backend_slots"];
    let _ = writeln!(
        out,
        "real server slots: {} live, {} retired, {} capacity",
        n(slots, "live"),
        n(slots, "retired"),
        n(slots, "capacity")
    );
    out += "Port       Driver           MAC                Link  Queues RSS\n";
    for p in v["ports"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<10} {:<16} {:<18} {:<5} {:<6} {}",
            s(p, "name"),
            s(p, "driver"),
            s(p, "mac"),
            if p["link_up"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            },
            n(p, "queues"),
            if p["rss"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            }
        );
        // A bond's members: link, and which one carries the traffic (802.3ad: LACP's view).
        for m in p["members"].as_array().into_iter().flatten() {
            let up = m["link_up"].as_bool() == Some(true);
            let what = match m.get("lacp") {
                Some(l) => lacp_member(l),
                None if m["active"].as_bool() == Some(true) => "active".to_string(),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  member {:<16} link {:<4} {what}",
                s(m, "device"),
                if up { "up" } else { "down" },
            );
        }
    }
    out += "Neighbour                      MAC                State       Port Unanswered\n";
    for nb in v["neighbours"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<30} {:<18} {:<11} {:<4} {}",
            s(nb, "ip"),
            nb["mac"].as_str().unwrap_or("(unresolved)"),
            s(nb, "state"),
            n(nb, "port"),
            n(nb, "unanswered_requests")
        );
    }
    out
}

/// An 802.3ad member's LACP state in a word, and its partner: `lacp aggregated partner
/// 02:..:01 key 33 port 1`. `aggregated`: collecting and distributing; `defaulted`: no LACPDU
/// from a partner; `expired`: the partner's stopped; `waiting`: negotiating.
fn lacp_member(l: &Value) -> String {
    if l.is_null() {
        return "lacp -".into();
    }
    let has = |k: &str| {
        l["actor_state"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(k)))
    };
    let word =
        if l["collecting"].as_bool() == Some(true) && l["distributing"].as_bool() == Some(true) {
            "aggregated"
        } else if has("defaulted") {
            "defaulted"
        } else if has("expired") {
            "expired"
        } else if l["collecting"].as_bool() == Some(true) {
            "collecting"
        } else {
            "waiting"
        };
    if word == "defaulted" {
        return format!("lacp {word}");
    }
    format!(
        "lacp {word:<10} partner {} key {} port {}",
        s(l, "partner_system"),
        n(l, "partner_key"),
        n(l, "partner_port")
    )
}

/// `vipctl stats` (`GET /api/v1/stats`): every counter, its total and each worker's share.
pub fn stats(v: &Value) -> String {
    let workers = v["workers"].as_array().map_or(&[][..], |a| &a[..]);
    let mut out = format!("{:<34} {:>14}", "Counter", "Total");
    for i in 0..workers.len() {
        let _ = write!(out, " {:>14}", format!("worker{i}"));
    }
    out.push('\n');
    let mut row = |name: &str, total: u64, per: &dyn Fn(&Value) -> u64| {
        let _ = write!(out, "{name:<34} {total:>14}");
        for w in workers {
            let _ = write!(out, " {:>14}", per(w));
        }
        out.push('\n');
    };
    if let Some(total) = v["total"].as_object() {
        for (name, t) in total {
            row(name, t.as_u64().unwrap_or(0), &|w: &Value| n(w, name));
        }
    }
    row("flows_active", n(v, "flows_active"), &|w: &Value| {
        n(w, "flows_active")
    });
    row("drops (all reasons)", n(v, "drops"), &|w: &Value| {
        w.as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("drop_"))
                .map(|(_, x)| x.as_u64().unwrap_or(0))
                .sum()
        })
    });
    out
}

#[cfg(test)]
mod tests;

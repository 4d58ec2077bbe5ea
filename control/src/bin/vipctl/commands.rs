//! Which options each command takes, ipvsadm's `commands_v_options` table: a misplaced
//! option is named rather than ignored.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    AddService,
    EditService,
    DeleteService,
    AddServer,
    EditServer,
    DeleteServer,
    Drain,
    List,
    Zero,
    Set,
    Save,
    Health,
    Status,
    Stats,
    Metrics,
    Reload,
    /// `drain --box` / `resume --box`: the box's maintenance switch (scale-out).
    DrainBox,
    ResumeBox,
    /// `box`: the box's scale-out state.
    Box,
    /// `trace`: the four steps of live connections.
    Trace,
}

impl Cmd {
    /// The name in messages (ipvsadm's long option, or the word).
    pub fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "--add-service (-A)",
            Cmd::EditService => "--edit-service (-E)",
            Cmd::DeleteService => "--delete-service (-D)",
            Cmd::AddServer => "--add-server (-a)",
            Cmd::EditServer => "--edit-server (-e)",
            Cmd::DeleteServer => "--delete-server (-d)",
            Cmd::Drain => "drain",
            Cmd::List => "--list (-L)",
            Cmd::Zero => "--zero (-Z)",
            Cmd::Set => "--set",
            Cmd::Save => "--save (-S)",
            Cmd::Health => "health",
            Cmd::Status => "status",
            Cmd::Stats => "stats",
            Cmd::Metrics => "metrics",
            Cmd::Reload => "reload",
            Cmd::DrainBox => "drain --box",
            Cmd::ResumeBox => "resume --box",
            Cmd::Box => "box",
            Cmd::Trace => "trace",
        }
    }
}

/// Options that go with some commands only.
const SERVICE_KEYS: &[&str] = &[
    "scheduler",
    "sched-flags",
    "persistent",
    "netmask",
    "mode",
    "dead-flows",
    "hash",
    "sorry-server",
    "interface",
    "laddr",
    "lports",
];
const CHECK_KEYS: &[&str] = &[
    "check",
    "check-path",
    "check-status",
    "check-host",
    "check-port",
    "check-interval",
    "check-timeout",
    "rise",
    "fall",
];

/// Which options each command takes (beyond `--api`, `--token-file`, `-h`), and which of them
/// it cannot do without.
pub fn allowed(cmd: Cmd) -> (Vec<&'static str>, &'static [&'static str]) {
    let v = |parts: &[&[&'static str]]| parts.concat();
    match cmd {
        Cmd::AddService | Cmd::EditService => (
            v(&[&["service", "forward"], SERVICE_KEYS, CHECK_KEYS]),
            &["service"],
        ),
        Cmd::DeleteService => (vec!["service"], &["service"]),
        Cmd::AddServer | Cmd::EditServer => (
            v(&[
                &[
                    "service",
                    "real-server",
                    "forward",
                    "weight",
                    "u-threshold",
                    "l-threshold",
                    "check-address",
                ],
                CHECK_KEYS,
            ]),
            &["service", "real-server"],
        ),
        Cmd::DeleteServer | Cmd::Drain => {
            (vec!["service", "real-server"], &["service", "real-server"])
        }
        Cmd::List => (
            vec![
                "service",
                "numeric",
                "connection",
                "client",
                "limit",
                "real-server",
                "timeout",
                "stats",
                "rate",
                "exact",
                "persistent-conn",
                "thresholds",
                "json",
            ],
            &[],
        ),
        Cmd::Zero => (vec!["service"], &[]),
        Cmd::Save => (vec!["numeric"], &[]),
        Cmd::Health => (vec!["service", "json", "release"], &[]),
        Cmd::Status | Cmd::Stats => (vec!["json"], &[]),
        Cmd::Set | Cmd::Metrics | Cmd::Reload => (vec![], &[]),
        Cmd::DrainBox | Cmd::ResumeBox => (vec!["box"], &["box"]),
        Cmd::Box => (vec!["json"], &[]),
        Cmd::Trace => (
            vec![
                "service",
                "client",
                "real-server",
                "seconds",
                "limit",
                "json",
            ],
            &[],
        ),
    }
}

pub fn option_text(name: &str) -> &'static str {
    match name {
        "service" => "-t|-u service-address",
        "real-server" => "-r server-address",
        "forward" => "-g|-i|-m",
        "weight" => "-w",
        "scheduler" => "-s",
        "sched-flags" => "-b",
        "persistent" => "-p",
        "netmask" => "-M",
        "u-threshold" => "-x",
        "l-threshold" => "-y",
        "mode" => "--mode",
        "numeric" => "-n",
        "connection" => "-c",
        "dead-flows" => "--dead-flows",
        "hash" => "--hash",
        "sorry-server" => "--sorry-server",
        "interface" => "--interface",
        "laddr" => "-z|--laddr",
        "lports" => "--lports",
        "check" => "--check",
        "check-path" => "--check-path",
        "check-status" => "--check-status",
        "check-host" => "--check-host",
        "check-port" => "--check-port",
        "check-address" => "--check-address",
        "check-interval" => "--check-interval",
        "check-timeout" => "--check-timeout",
        "rise" => "--rise",
        "fall" => "--fall",
        "client" => "--client",
        "limit" => "--limit",
        "timeout" => "--timeout",
        "stats" => "--stats",
        "rate" => "--rate",
        "exact" => "--exact",
        "persistent-conn" => "--persistent-conn",
        "thresholds" => "--thresholds",
        "json" => "--json",
        "box" => "--box",
        "seconds" => "--seconds",
        "release" => "--release",
        _ => "an option",
    }
}

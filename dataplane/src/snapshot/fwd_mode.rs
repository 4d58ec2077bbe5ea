//! The forwarding modes (LVS's packet-forwarding methods, and DPVS's full-NAT).

/// How a real server is reached (LVS's packet-forwarding methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FwdMode {
    /// Half-NAT: destination rewritten to the real server; replies come back through vipd.
    #[default]
    Nat,
    /// Direct routing: only the destination MAC changes; replies bypass vipd.
    Dr,
    /// IP-in-IP tunnel: encapsulated to the real server; replies bypass vipd.
    Tunnel,
    /// Full-NAT (DPVS's FNAT): the source becomes one of the service's local addresses and
    /// ports, the destination the real server; replies come back to the local address and
    /// are rewritten both ways. The real server never sees the client's address.
    Fnat,
}

impl std::str::FromStr for FwdMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nat" => Ok(FwdMode::Nat),
            "dr" => Ok(FwdMode::Dr),
            "tunnel" | "tun" => Ok(FwdMode::Tunnel),
            "fnat" => Ok(FwdMode::Fnat),
            _ => Err(format!(
                "unknown forwarding mode `{s}` (expected nat, fnat, dr or tunnel)"
            )),
        }
    }
}

impl std::fmt::Display for FwdMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FwdMode::Nat => "nat",
            FwdMode::Dr => "dr",
            FwdMode::Tunnel => "tunnel",
            FwdMode::Fnat => "fnat",
        })
    }
}

impl FwdMode {
    /// Whether replies come back through vipd and are rewritten (NAT and full-NAT): such a
    /// real server's endpoint is looked up for replies and its connections have an owner.
    pub fn replies_through_us(self) -> bool {
        matches!(self, FwdMode::Nat | FwdMode::Fnat)
    }
}

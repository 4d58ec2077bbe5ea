//! Connection state: the TCP state machine of a balanced connection and its timeouts.
//!
//! The machine follows IPVS (`ip_vs_proto_tcp.c`) in spirit, with fewer states: the load
//! balancer is not an endpoint, it only needs to know how long to keep a connection's entry.
//! FIN_WAIT, CLOSE_WAIT and LAST_ACK of IPVS collapse into [`TcpState::FinWait`] ("a FIN was
//! seen"): they share one timeout (`tcp_fin`) and the load balancer never acts on their
//! difference. The entry remembers which side sent a FIN and whether any reply was ever seen
//! (three bits), which is what the collapsed states would have told.
//!
//! Events are ranked as in IPVS: RST over SYN over FIN over ACK (a FIN+ACK segment is a FIN).
//! `d` is the packet's direction, "other FIN" means the opposite direction already sent one,
//! "one-way" means no [`Direction::Reply`] packet was ever tracked (DR and TUN: the real server
//! answers the client directly, as in IPVS's input-only table).
//!
//! | state \ event | RST | SYN, Original | SYN, Reply | FIN (from `d`) | ACK, Original | ACK, Reply |
//! |---|---|---|---|---|---|---|
//! | SynRecv (and `None` on a TCP entry) | Close | SynRecv | SynRecv | FinWait, or TimeWait if other FIN | Established | Established |
//! | Established | Close | Established | Established | FinWait, or TimeWait if other FIN | Established | Established |
//! | FinWait | Close | SynRecv (port reuse, FIN marks cleared) | FinWait | FinWait, or TimeWait if other FIN | TimeWait if one-way and the client sent a FIN, else FinWait | FinWait |
//! | TimeWait | Close | SynRecv (port reuse, FIN marks cleared) | TimeWait | TimeWait | TimeWait | TimeWait |
//! | Close | Close | SynRecv (port reuse) | Close | Close | Close | Close |
//!
//! A segment with none of the four flags leaves the state as it is. A packet tracked without
//! flags (UDP) sets [`TcpState::None`]. Every tracked packet refreshes the entry's expiry to
//! now + the timeout of the state it leaves the entry in ([`Timeouts::for_state`]).
//!
//! One-way (DR/TUN) closes: the client's FIN gives FinWait; the client's next ACK can only
//! acknowledge the server's FIN or data the server still sends after the client's half-close,
//! so it gives TimeWait. A half-closed download that stays idle longer than `tcp_time_wait`
//! loses its entry; IPVS has the same limit (its FIN_WAIT timeout). With both directions seen
//! (NAT), TimeWait needs a FIN from each side, as in a real TCP stack.

/// Connection timeouts in seconds, per state. Defaults follow IPVS (`ipvsadm --set` and
/// `ip_vs_proto_tcp.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// [`TcpState::SynRecv`]: a SYN was seen, the handshake is not complete (IPVS SYN_RECV: 60).
    pub tcp_syn: u32,
    /// [`TcpState::Established`] (IPVS: 900).
    pub tcp_established: u32,
    /// [`TcpState::FinWait`]: IPVS FIN_WAIT, CLOSE_WAIT and LAST_ACK in one (IPVS: 120).
    pub tcp_fin: u32,
    /// [`TcpState::TimeWait`] (IPVS: 120).
    pub tcp_time_wait: u32,
    /// [`TcpState::Close`]: after a RST (IPVS CLOSE: 10).
    pub tcp_close: u32,
    /// [`TcpState::None`]: UDP, refreshed by every datagram (IPVS: 300).
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 60,
            tcp_established: 900,
            tcp_fin: 120,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp: 300,
        }
    }
}

impl Timeouts {
    /// The timeout of a state, in seconds.
    #[inline]
    pub fn for_state(&self, state: TcpState) -> u32 {
        match state {
            TcpState::None => self.udp,
            TcpState::SynRecv => self.tcp_syn,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

/// The state of a connection, as far as the load balancer can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TcpState {
    /// Not TCP (UDP): one state, timeout `udp`.
    #[default]
    None = 0,
    /// A SYN was seen from the client; the handshake is not complete.
    SynRecv = 1,
    /// The handshake completed (or a mid-stream connection was picked up).
    Established = 2,
    /// A FIN was seen (IPVS FIN_WAIT, CLOSE_WAIT and LAST_ACK).
    FinWait = 3,
    /// FINs from both sides, or (one direction seen) the client's FIN and a later ACK.
    TimeWait = 4,
    /// A RST was seen.
    Close = 5,
}

impl TcpState {
    /// Number of states.
    pub const COUNT: usize = 6;
    /// Every state, in discriminant order.
    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::None,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
    ];

    /// The state stored as `state as u8` (any other value reads as `Close`).
    #[inline]
    pub(crate) fn from_u8(v: u8) -> TcpState {
        match v {
            0 => TcpState::None,
            1 => TcpState::SynRecv,
            2 => TcpState::Established,
            3 => TcpState::FinWait,
            4 => TcpState::TimeWait,
            _ => TcpState::Close,
        }
    }

    /// A short lowercase name (for listings and metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "none",
            TcpState::SynRecv => "syn_recv",
            TcpState::Established => "established",
            TcpState::FinWait => "fin_wait",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
        }
    }
}

/// The TCP flags the state machine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

impl TcpFlags {
    /// The flags of a TCP header's flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        TcpFlags {
            fin: bits & 0x01 != 0,
            syn: bits & 0x02 != 0,
            rst: bits & 0x04 != 0,
            ack: bits & 0x10 != 0,
        }
    }
}

/// Which way a packet travels relative to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client -> VIP (the connection's original key).
    Original,
    /// Real server -> client (the reply key; seen in NAT mode only).
    Reply,
}

/// What the state machine remembers besides the state: three bits kept in the flow entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Seen(pub(crate) u8);

impl Seen {
    /// The client sent a FIN.
    pub(crate) const FIN_ORIGINAL: u8 = 0x01;
    /// The real server sent a FIN.
    pub(crate) const FIN_REPLY: u8 = 0x02;
    /// A reply packet was tracked (both directions pass through us).
    pub(crate) const REPLY: u8 = 0x04;
    /// All bits the state machine uses.
    pub(crate) const MASK: u8 = 0x07;

    fn fin_bit(dir: Direction) -> u8 {
        match dir {
            Direction::Original => Self::FIN_ORIGINAL,
            Direction::Reply => Self::FIN_REPLY,
        }
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// The next state of a connection in `state` (with memory `seen`) after a packet in `dir`
/// with `flags` (`None` for UDP). See the module documentation for the table.
#[inline]
pub(crate) fn next_state(
    state: TcpState,
    seen: Seen,
    dir: Direction,
    flags: Option<TcpFlags>,
) -> (TcpState, Seen) {
    let mut seen = seen;
    if dir == Direction::Reply {
        seen.0 |= Seen::REPLY;
    }
    let Some(f) = flags else {
        return (TcpState::None, seen);
    };
    let closing = matches!(
        state,
        TcpState::FinWait | TcpState::TimeWait | TcpState::Close
    );
    let next = if f.rst {
        TcpState::Close
    } else if f.syn {
        match (dir, state) {
            (Direction::Original, _) if closing => {
                // The client reuses its port: a new connection starts.
                seen.0 &= !(Seen::FIN_ORIGINAL | Seen::FIN_REPLY);
                TcpState::SynRecv
            }
            (_, TcpState::None | TcpState::SynRecv) => TcpState::SynRecv,
            (_, s) => s,
        }
    } else if f.fin {
        match state {
            TcpState::TimeWait | TcpState::Close => state,
            _ => {
                seen.0 |= Seen::fin_bit(dir);
                if seen.has(Seen::FIN_ORIGINAL) && seen.has(Seen::FIN_REPLY) {
                    TcpState::TimeWait
                } else {
                    TcpState::FinWait
                }
            }
        }
    } else if f.ack {
        match state {
            TcpState::None | TcpState::SynRecv | TcpState::Established => TcpState::Established,
            TcpState::FinWait => {
                let one_way = !seen.has(Seen::REPLY);
                if dir == Direction::Original && one_way && seen.has(Seen::FIN_ORIGINAL) {
                    TcpState::TimeWait
                } else {
                    TcpState::FinWait
                }
            }
            TcpState::TimeWait | TcpState::Close => state,
        }
    } else {
        state
    };
    (next, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpFlags = TcpFlags::from_bits(0x02);
    const SYN_ACK: TcpFlags = TcpFlags::from_bits(0x12);
    const ACK: TcpFlags = TcpFlags::from_bits(0x10);
    const FIN_ACK: TcpFlags = TcpFlags::from_bits(0x11);
    const RST: TcpFlags = TcpFlags::from_bits(0x04);
    const O: Direction = Direction::Original;
    const R: Direction = Direction::Reply;

    /// Runs a packet sequence from a fresh TCP entry; returns the state after each packet.
    fn run(seq: &[(Direction, TcpFlags)]) -> Vec<TcpState> {
        let mut st = (TcpState::SynRecv, Seen::default());
        seq.iter()
            .map(|&(d, f)| {
                st = next_state(st.0, st.1, d, Some(f));
                st.0
            })
            .collect()
    }

    #[test]
    fn flags_from_bits() {
        assert_eq!(
            TcpFlags::from_bits(0x12),
            TcpFlags {
                syn: true,
                ack: true,
                fin: false,
                rst: false
            }
        );
        assert_eq!(
            TcpFlags::from_bits(0x05),
            TcpFlags {
                fin: true,
                rst: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn nat_normal_close_client_first() {
        use TcpState::{Established as E, FinWait as F, SynRecv as S, TimeWait as T};
        let seq = [
            (O, SYN),
            (R, SYN_ACK),
            (O, ACK),
            (O, ACK),
            (R, ACK),
            (O, FIN_ACK),
            (R, ACK),
            (O, ACK), // client acks data sent after its half-close: still FinWait (both ways seen)
            (R, FIN_ACK),
            (O, ACK),
        ];
        assert_eq!(run(&seq), vec![S, S, E, E, E, F, F, F, T, T]);
    }

    #[test]
    fn nat_normal_close_server_first() {
        use TcpState::{Established as E, FinWait as F, SynRecv as S, TimeWait as T};
        let seq = [
            (O, SYN),
            (R, SYN_ACK),
            (O, ACK),
            (R, FIN_ACK),
            (O, ACK),
            (O, FIN_ACK),
            (R, ACK),
        ];
        assert_eq!(run(&seq), vec![S, S, E, F, F, T, T]);
    }

    #[test]
    fn one_way_close_reaches_time_wait() {
        use TcpState::{Established as E, FinWait as F, SynRecv as S, TimeWait as T};
        // DR/TUN: only the client's packets are seen.
        let seq = [
            (O, SYN),
            (O, ACK),
            (O, ACK),
            (O, FIN_ACK),
            (O, ACK),
            (O, ACK),
        ];
        assert_eq!(run(&seq), vec![S, E, E, F, T, T]);
        // Server closes first: the client's FIN is the last thing seen, FinWait until timeout.
        let seq = [(O, SYN), (O, ACK), (O, FIN_ACK)];
        assert_eq!(run(&seq), vec![S, E, F]);
    }

    #[test]
    fn rst_closes_from_every_state_and_direction() {
        for s in TcpState::ALL {
            for d in [O, R] {
                assert_eq!(
                    next_state(s, Seen::default(), d, Some(RST)).0,
                    TcpState::Close
                );
            }
        }
        let seq = [
            (O, SYN),
            (R, SYN_ACK),
            (O, ACK),
            (R, RST),
            (O, ACK),
            (O, FIN_ACK),
        ];
        use TcpState::{Close as C, Established as E, SynRecv as S};
        assert_eq!(run(&seq), vec![S, S, E, C, C, C]);
    }

    #[test]
    fn syn_reuses_closed_connection() {
        use TcpState::{Close as C, Established as E, FinWait as F, SynRecv as S, TimeWait as T};
        let seq = [
            (O, SYN),
            (O, ACK),
            (O, FIN_ACK),
            (O, ACK),
            (O, SYN),
            (O, ACK),
            (O, FIN_ACK),
        ];
        // After reuse, the old FIN mark is gone: one FIN gives FinWait again, not TimeWait.
        assert_eq!(run(&seq), vec![S, E, F, T, S, E, F]);
        let seq = [(O, SYN), (R, RST), (O, SYN)];
        assert_eq!(run(&seq), vec![S, C, S]);
        // A SYN on an established connection (retransmission, or an attack) changes nothing.
        let seq = [(O, SYN), (O, ACK), (O, SYN), (R, SYN_ACK)];
        assert_eq!(run(&seq), vec![S, E, E, E]);
    }

    #[test]
    fn mid_stream_pickup_and_no_flags() {
        let (s, _) = next_state(TcpState::SynRecv, Seen::default(), O, Some(ACK));
        assert_eq!(s, TcpState::Established);
        let (s, _) = next_state(TcpState::None, Seen::default(), O, Some(ACK));
        assert_eq!(s, TcpState::Established);
        for st in TcpState::ALL {
            assert_eq!(
                next_state(st, Seen::default(), O, Some(TcpFlags::default())).0,
                st
            );
        }
    }

    #[test]
    fn udp_is_none() {
        let (s, seen) = next_state(TcpState::None, Seen::default(), R, None);
        assert_eq!(s, TcpState::None);
        assert!(seen.has(Seen::REPLY));
    }

    #[test]
    fn timeouts_per_state() {
        let t = Timeouts::default();
        assert_eq!(t.for_state(TcpState::SynRecv), 60);
        assert_eq!(t.for_state(TcpState::Established), 900);
        assert_eq!(t.for_state(TcpState::FinWait), 120);
        assert_eq!(t.for_state(TcpState::TimeWait), 120);
        assert_eq!(t.for_state(TcpState::Close), 10);
        assert_eq!(t.for_state(TcpState::None), 300);
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }
}

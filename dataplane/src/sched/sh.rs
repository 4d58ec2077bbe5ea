//! Source hashing (`sh`, IPVS's `ip_vs_sh`): the real server is a function of the client's
//! address (and port, with `sh-port`), so every connection of a client goes to the same real
//! server on every core and every box, without any state.
//!
//! IPVS hashes into a 256-bucket table where a real server of weight w takes w buckets in a
//! row; vipd uses a Maglev table instead ([`MaglevTable`], weighted, the same on every box),
//! indexed by a fixed-seed hash of the client: when a real server leaves or is drained, only
//! its own clients move (IPVS's table is rebuilt from scratch and moves many others).
//!
//! Flags (ipvsadm `-b`): `sh-port` puts the client's port in the hash (then it keeps a
//! connection, not a client, on its real server, like Maglev); `sh-fallback`: when the
//! client's real server is over its connection threshold, the connection goes to another
//! one (the next slots of the table, then the first available real server) instead of being
//! refused. Without it the connection is refused, as IPVS does.

use super::{fallback, Entries, Load, MaglevTable, NewConn, SchedBackend, SchedError, Scheduler};

/// Seed of the client hash. Fixed so that every box hashes a client identically (and
/// distinct from the flow hash's, so the table slot is independent of the owning worker).
const SH_SEED: u64 = 0x7669_7064_5f73_6831; // "vipd_sh1"

/// `sh`'s flags (ipvsadm `-b sh-fallback,sh-port`), for other schedulers always off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags {
    /// Another real server when the client's is over its connection threshold.
    pub sh_fallback: bool,
    /// The client's port is hashed too.
    pub sh_port: bool,
}

impl SchedFlags {
    /// The flags as ipvsadm prints them: `sh-fallback,sh-port`, `""` for none.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.sh_fallback {
            v.push("sh-fallback");
        }
        if self.sh_port {
            v.push("sh-port");
        }
        v
    }
}

/// Source hashing over a Maglev table.
#[derive(Clone, Debug)]
pub struct SourceHash {
    table: MaglevTable,
    live: Entries,
    flags: SchedFlags,
}

impl SourceHash {
    /// Build the `size`-entry table over `backends` (errors as [`MaglevTable::build`]).
    pub fn build(
        backends: &[SchedBackend],
        size: u32,
        flags: SchedFlags,
    ) -> Result<Self, SchedError> {
        let table = MaglevTable::build(backends, size)?;
        let live = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(SourceHash {
            table,
            live: Entries::pack(live, backends.len()),
            flags,
        })
    }

    /// Its flags.
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }

    /// The hash a client (and its port with `sh-port`) is looked up by.
    #[inline]
    pub fn client_hash(&self, client: &[u8; 16], port: u16) -> u64 {
        let mut bytes = [0u8; 18];
        bytes[..16].copy_from_slice(client);
        if self.flags.sh_port {
            bytes[16..].copy_from_slice(&port.to_be_bytes());
        }
        xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, SH_SEED)
    }
}

impl SourceHash {
    /// The client's real server whatever the load (the stateless answer for every packet of
    /// its connections).
    #[inline]
    pub fn lookup(&self, client: &[u8; 16], port: u16) -> Option<u32> {
        self.table.lookup(self.client_hash(client, port))
    }
}

impl Scheduler for SourceHash {
    #[inline]
    fn pick<L: Load>(&self, conn: &NewConn<'_>, _cursor: &mut u64, load: &L) -> Option<u32> {
        let h = self.client_hash(conn.client, conn.client_port);
        let slot = (h % u64::from(self.table.size())) as usize;
        let i = self.table.owner(slot as u32)?;
        if !load.limited() || load.available(i) {
            return Some(i);
        }
        if !self.flags.sh_fallback {
            return None;
        }
        fallback(self.table.slots(), slot, &self.live, load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{equal, weighted, Counts};
    use crate::sched::Unlimited;

    fn client(i: u32) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&(0xc000_0200u32 + i).to_be_bytes());
        a
    }

    fn at<L: Load>(s: &SourceHash, c: &[u8; 16], port: u16, load: &L) -> Option<u32> {
        let conn = NewConn {
            hash: u64::from(port).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            client: c,
            client_port: port,
        };
        s.pick(&conn, &mut 0, load)
    }

    #[test]
    fn a_client_keeps_its_real_server_across_ports_and_the_spread_follows_weights() {
        let s = SourceHash::build(&weighted(&[1, 1, 2]), 4099, SchedFlags::default()).unwrap();
        let mut counts = [0u32; 3];
        for i in 0..4000 {
            let c = client(i);
            let first = at(&s, &c, 1024, &Unlimited).unwrap();
            for port in [1025, 40000, 65535] {
                assert_eq!(at(&s, &c, port, &Unlimited), Some(first), "client {i}");
            }
            counts[first as usize] += 1;
        }
        // Weights 1:1:2 of 4000 clients: about 1000, 1000, 2000.
        for (got, want) in counts.iter().zip([1000.0, 1000.0, 2000.0]) {
            assert!((f64::from(*got) - want).abs() < want * 0.1, "{counts:?}");
        }
        // The same table on another box (built again): the same answers.
        let again = SourceHash::build(&weighted(&[1, 1, 2]), 4099, SchedFlags::default()).unwrap();
        assert!((0..200)
            .all(|i| at(&s, &client(i), 1, &Unlimited) == at(&again, &client(i), 1, &Unlimited)));
    }

    #[test]
    fn sh_port_hashes_the_port_too() {
        let flags = SchedFlags {
            sh_port: true,
            ..Default::default()
        };
        let s = SourceHash::build(&equal(8), 4099, flags).unwrap();
        let c = client(7);
        let seen: std::collections::HashSet<u32> = (0..200)
            .filter_map(|p| at(&s, &c, 1024 + p, &Unlimited))
            .collect();
        assert!(
            seen.len() > 4,
            "one client over many ports reaches many: {seen:?}"
        );
        assert_eq!(at(&s, &c, 5000, &Unlimited), at(&s, &c, 5000, &Unlimited));
    }

    #[test]
    fn overloaded_without_fallback_refuses_with_fallback_moves_stably() {
        let b = equal(4);
        let plain = SourceHash::build(&b, 4099, SchedFlags::default()).unwrap();
        let flags = SchedFlags {
            sh_fallback: true,
            ..Default::default()
        };
        let fb = SourceHash::build(&b, 4099, flags).unwrap();
        let c = client(42);
        let own = at(&plain, &c, 1, &Unlimited).unwrap();
        let mut load = Counts::new(4);
        load.unavailable(own);
        assert_eq!(at(&plain, &c, 1, &load), None, "IPVS sh: no destination");
        let other = at(&fb, &c, 1, &load).unwrap();
        assert_ne!(other, own);
        // Stable while the overload lasts: the same fallback for every connection.
        for port in 2..50 {
            assert_eq!(at(&fb, &c, port, &load), Some(other));
        }
        // Back under its threshold: the client returns to its own real server.
        assert_eq!(at(&fb, &c, 1, &Counts::new(4)), Some(own));
        // The stateless answer ignores the load: always its own.
        assert_eq!(fb.lookup(&c, 1), Some(own));
        // Everything overloaded: refused even with the fallback.
        let mut all = Counts::new(4);
        (0..4).for_each(|i| all.unavailable(i));
        assert_eq!(at(&fb, &c, 1, &all), None);
        assert_eq!(fb.flags().names(), ["sh-fallback"]);
    }
}

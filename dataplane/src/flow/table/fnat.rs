//! Full-NAT's use of the flow table: a full-NAT connection's reply key (real server -> local
//! address:port) is chosen among candidates when the connection is entered, and a
//! connection's other key is read back to rewrite its packets.
//!
//! The table is the local ports' allocator. A local address and port is in use towards a real
//! server exactly while a live connection's reply key names it: there is no free list to keep
//! in step with the many ways a connection leaves the table (a lookup or an insert finding it
//! expired, the sweep, [`FlowTable::remove`], a finished connection replaced by a new SYN, an
//! insert rolled back). Whatever frees the slot frees the port, and an expired connection's
//! port is free as soon as a search meets it (its lookup removes the connection, as every
//! lookup does). Uniqueness is that of the reply key: (real server address and port, local
//! address and port, protocol), so two real servers may see the same local endpoint.

use super::super::slot::{Key, V4, V6};
use super::{is_v4, FlowId, FlowTable, InsertError, Miss, TableHash};
use crate::flow::FlowKey;

impl FlowTable {
    /// A new connection under `key` (`hash` = [`FlowTable::hash`]`(key)`) whose reply key is
    /// the first of `candidate(0)`, ..., `candidate(tries - 1)` that belongs to no live
    /// connection (`None`, or a key of the other family: no candidate at that index); returns
    /// the connection and the index of the candidate it took. `miss`: the
    /// [`lookup_or_miss`](FlowTable::lookup_or_miss) of `key` just before, if any (as in
    /// [`insert_after_miss`](FlowTable::insert_after_miss)).
    ///
    /// Precedence: `Full` while the table [refuses new
    /// connections](FlowTable::refuses_new), then `Exists` when `key` clashes, then `Full`
    /// when there is no room (before any candidate is looked at), then
    /// [`InsertError::NoReplyKey`] when every candidate is taken. On failure nothing of the
    /// connection stays behind (expired connections met on the way may have been removed).
    #[allow(clippy::too_many_arguments)] // the insert's arguments and the candidates
    pub fn insert_searching(
        &mut self,
        key: &FlowKey,
        hash: TableHash,
        miss: Option<Miss>,
        mut candidate: impl FnMut(u32) -> Option<FlowKey>,
        tries: u32,
        backend: u32,
        now_ms: u64,
    ) -> Result<(FlowId, u32), InsertError> {
        if self.refuse_full(key, now_ms) {
            return Err(InsertError::Full);
        }
        let skip_key = miss.is_some_and(|m| m.epoch == self.ctx.epoch && m.hash == hash);
        let v4 = is_v4(key);
        let ctx = &mut self.ctx;
        if v4 {
            let c = |i| {
                let rk = candidate(i).filter(is_v4)?;
                Some((Key::<V4>::of(&rk), FlowTable::hash(&rk)))
            };
            self.v4.insert_searching(
                &Key::of(key),
                hash,
                skip_key,
                c,
                tries,
                backend,
                now_ms,
                ctx,
            )
        } else {
            let c = |i| {
                let rk = candidate(i).filter(|k| !is_v4(k))?;
                Some((Key::<V6>::of(&rk), FlowTable::hash(&rk)))
            };
            self.v6.insert_searching(
                &Key::of(key),
                hash,
                skip_key,
                c,
                tries,
                backend,
                now_ms,
                ctx,
            )
        }
    }

    /// Connection `id`'s original key and, when it has one, its reply key (`None` for a stale
    /// id). For the general path's full-NAT rewrites: the other key holds the addresses and
    /// ports a packet of one direction is rewritten to.
    pub fn keys(&self, id: FlowId) -> Option<(FlowKey, Option<FlowKey>)> {
        if id.v6 {
            let (k, r) = self.v6.keys(id)?;
            Some((k.flow_key(), r.map(|r| r.flow_key())))
        } else {
            let (k, r) = self.v4.keys(id)?;
            Some((k.flow_key(), r.map(|r| r.flow_key())))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed test

    use super::*;
    use crate::flow::key::PROTO_TCP;
    use crate::flow::Timeouts;
    use std::net::Ipv4Addr;

    fn client(port: u16) -> FlowKey {
        FlowKey::v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(10, 100, 0, 1),
            port,
            80,
            PROTO_TCP,
        )
    }

    /// The reply key of local port `port`: real server -> 10.0.0.100:port.
    fn reply(port: u16) -> FlowKey {
        FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 21),
            Ipv4Addr::new(10, 0, 0, 100),
            8080,
            port,
            PROTO_TCP,
        )
    }

    fn enter(t: &mut FlowTable, cport: u16, ports: &[u16], now: u64) -> Result<u16, InsertError> {
        let key = client(cport);
        let candidate = |i: u32| ports.get(i as usize).map(|&p| reply(p));
        let tries = ports.len() as u32;
        let (_, i) =
            t.insert_searching(&key, FlowTable::hash(&key), None, candidate, tries, 1, now)?;
        Ok(ports[i as usize])
    }

    #[test]
    fn the_first_free_reply_key_is_taken_and_kept_until_its_connection_leaves() {
        let mut t = FlowTable::with_capacity(64, Timeouts::default());
        let ports = [40000, 40001, 40002];
        assert_eq!(enter(&mut t, 1, &ports, 0), Ok(40000));
        assert_eq!(enter(&mut t, 2, &ports, 0), Ok(40001));
        assert_eq!(enter(&mut t, 3, &ports, 0), Ok(40002));
        assert_eq!(enter(&mut t, 4, &ports, 0), Err(InsertError::NoReplyKey));
        assert_eq!(t.counts().insert_no_reply_key, 1);
        assert_eq!(
            enter(&mut t, 1, &ports, 0),
            Err(InsertError::Exists),
            "key clash first"
        );
        // The reply key is readable back, and the connection owns its local port.
        let hit = t
            .lookup(&client(2), FlowTable::hash(&client(2)), 0)
            .unwrap();
        assert_eq!(t.keys(hit.id), Some((client(2), Some(reply(40001)))));
        t.remove(hit.id);
        assert_eq!(
            enter(&mut t, 5, &ports, 0),
            Ok(40001),
            "freed by the removal"
        );
        // Expired connections free their ports as the search meets them.
        let later = 1000 * u64::from(Timeouts::default().tcp_syn) + 1;
        assert_eq!(enter(&mut t, 6, &ports, later), Ok(40000));
        assert_eq!(
            t.len(),
            3,
            "the search stops at the first free key: the other expired ones wait to be met"
        );
        assert_eq!(enter(&mut t, 7, &ports, later), Ok(40001));
    }

    #[test]
    fn missing_and_other_family_candidates_are_skipped() {
        let mut t = FlowTable::with_capacity(64, Timeouts::default());
        let key = client(1);
        let v6 = FlowKey::v6(
            "fd00::21".parse().unwrap(),
            "fd00::100".parse().unwrap(),
            8080,
            40000,
            PROTO_TCP,
        );
        let candidate = |i: u32| match i {
            0 => None,
            1 => Some(v6),
            2 => Some(key),
            _ => Some(reply(40003)),
        };
        let (_, i) = t
            .insert_searching(&key, FlowTable::hash(&key), None, candidate, 4, 1, 0)
            .unwrap();
        assert_eq!(
            i, 3,
            "none, the other family and the key itself are no reply key"
        );
    }
}

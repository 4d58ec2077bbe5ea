//! A full-NAT service's pool of local addresses and ports.

/// A full-NAT service's local addresses and ports: every (address, port) of the pool is one
/// source endpoint towards each real server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPool {
    /// The local addresses (flow-key form), all of the service VIP's family.
    pub addrs: Vec<[u8; 16]>,
    /// First local port.
    pub port_min: u16,
    /// Last local port (inclusive).
    pub port_max: u16,
}

impl LocalPool {
    /// How many (address, port) pairs the pool has.
    pub fn size(&self) -> u32 {
        let ports = u32::from(self.port_max.saturating_sub(self.port_min)) + 1;
        ports.saturating_mul(self.addrs.len() as u32)
    }

    /// The pool's `i`-th (address, port), `i` taken modulo [`LocalPool::size`]; `None` for an
    /// empty pool.
    #[inline]
    pub fn nth(&self, i: u32) -> Option<([u8; 16], u16)> {
        let size = self.size();
        if size == 0 || self.addrs.is_empty() {
            return None;
        }
        let i = i % size;
        let n = self.addrs.len() as u32;
        let addr = *self.addrs.get((i % n) as usize)?;
        let port = self.port_min.checked_add(u16::try_from(i / n).ok()?)?;
        Some((addr, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_and_port_once_per_round() {
        let pool = LocalPool {
            addrs: vec![[1; 16], [2; 16], [3; 16]],
            port_min: 65534,
            port_max: 65535,
        };
        assert_eq!(pool.size(), 6);
        let mut seen: Vec<_> = (0..6).filter_map(|i| pool.nth(i)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(pool.nth(6), pool.nth(0), "modulo the size");
        assert_eq!(pool.nth(u32::MAX), pool.nth(u32::MAX % 6));
        assert_eq!(LocalPool::default().nth(0), None);
    }
}

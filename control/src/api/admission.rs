//! Which connections the API holds: at most `api.max_connections` per listener. At the cap a
//! new connection takes the place of the oldest one that has not yet shown a valid token (a
//! slowloris client, a scanner): so a flood of anonymous connections never locks out the
//! token holders (Prometheus, vipctl), and costs the flooder its own older connections. When
//! every connection held has shown a token, the new one is refused.
//!
//! Hand-written: tower's `ConcurrencyLimit` and hyper's builders refuse or queue at a limit,
//! none evicts by trust.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `api.listen` (plain or TLS).
    Tcp,
    /// The local admin socket (`api.socket`).
    Unix,
}

impl Via {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Unix => "unix",
        }
    }
}

/// What a request knows of its connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The listener.
    pub via: Via,
    /// The connection.
    pub conn: ConnHandle,
}

/// The counters of one listener, for `/metrics`.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections refused at the cap (every one held had shown a token).
    pub refused: AtomicU64,
    /// Connections closed to make room for a new one (they had shown no token).
    pub evicted: AtomicU64,
    /// Connections closed because a request head (or body, or TLS handshake) took longer
    /// than `api.header_timeout`.
    pub header_timeouts: AtomicU64,
    /// Connections closed after `api.idle_timeout` without a byte moving.
    pub idle_timeouts: AtomicU64,
    /// `accept(2)` failures (EMFILE: no descriptor left).
    pub accept_errors: AtomicU64,
    /// Unix socket peers refused for their user id.
    pub peers_refused: AtomicU64,
}

impl ListenerCounters {
    /// Add one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Weak<Inner>>,
    /// Connections that have not shown a token yet, oldest first.
    untrusted: BTreeSet<u64>,
}

/// The connections of one listener.
#[derive(Debug)]
pub struct Admission {
    cap: usize,
    table: Mutex<Table>,
    /// Its counters.
    pub counters: Arc<ListenerCounters>,
}

#[derive(Debug)]
struct Inner {
    id: u64,
    trusted: AtomicBool,
    close: Notify,
    admission: Arc<Admission>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.admission.table.lock() {
            t.open.remove(&self.id);
            t.untrusted.remove(&self.id);
        }
    }
}

/// A connection the admission holds; it leaves the table when the last handle goes.
#[derive(Debug, Clone)]
pub struct ConnHandle(Arc<Inner>);

impl ConnHandle {
    /// The connection showed a valid token (or needs none): it is never evicted.
    pub fn trust(&self) {
        if !self.0.trusted.swap(true, Ordering::Relaxed) {
            if let Ok(mut t) = self.0.admission.table.lock() {
                t.untrusted.remove(&self.0.id);
            }
        }
    }

    /// Whether it showed a valid token.
    pub fn trusted(&self) -> bool {
        self.0.trusted.load(Ordering::Relaxed)
    }

    /// Resolves when the admission closes this connection (evicted).
    pub async fn closed(&self) {
        self.0.close.notified().await;
    }
}

impl Admission {
    /// Room for `cap` connections.
    pub fn new(cap: usize) -> Arc<Admission> {
        Arc::new(Admission {
            cap: cap.max(1),
            table: Mutex::new(Table::default()),
            counters: Arc::default(),
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.table.lock().map_or(0, |t| t.open.len())
    }

    /// Take a new connection: its handle, or None when it is refused. `trusted` connections
    /// (the local socket) are never evicted.
    pub fn admit(self: &Arc<Self>, trusted: bool) -> Option<ConnHandle> {
        let mut evict = None;
        let handle = {
            let Ok(mut t) = self.table.lock() else {
                return None;
            };
            if t.open.len() >= self.cap {
                let oldest = t.untrusted.pop_first()?;
                evict = t.open.remove(&oldest).and_then(|w| w.upgrade());
            }
            t.next += 1;
            let id = t.next;
            let inner = Arc::new(Inner {
                id,
                trusted: AtomicBool::new(trusted),
                close: Notify::new(),
                admission: Arc::clone(self),
            });
            t.open.insert(id, Arc::downgrade(&inner));
            if !trusted {
                t.untrusted.insert(id);
            }
            ConnHandle(inner)
        };
        // Outside the lock: the last reference to the evicted one may go here.
        if let Some(e) = evict {
            ListenerCounters::bump(&self.counters.evicted);
            e.close.notify_one();
        }
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_anonymous_connection_makes_room_token_holders_stay() {
        let a = Admission::new(3);
        let c1 = a.admit(false).unwrap();
        let c2 = a.admit(false).unwrap();
        let c3 = a.admit(false).unwrap();
        c1.trust();
        assert_eq!(a.open(), 3);
        // c2 is the oldest untrusted: it goes, c1 (trusted) stays.
        let c4 = a.admit(false).unwrap();
        assert_eq!(a.open(), 3);
        assert_eq!(a.counters.evicted.load(Ordering::Relaxed), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), c2.closed())
                .await
                .expect("the evicted connection is told to close");
        });
        c3.trust();
        c4.trust();
        assert!(
            a.admit(false).is_none(),
            "every one held is trusted: refused"
        );
        drop(c3);
        assert_eq!(a.open(), 2, "a connection leaves when its last handle goes");
        let c5 = a.admit(true).unwrap();
        assert!(c5.trusted());
        assert!(a.admit(false).is_none());
        drop((c1, c2, c4, c5));
        assert_eq!(a.open(), 0);
    }
}

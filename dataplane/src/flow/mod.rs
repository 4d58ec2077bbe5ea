//! Flows: the key, the per-core flow table, TCP state tracking and timeouts.

mod cuckoo;
pub(crate) mod hash;
pub mod key;
pub mod mem;
pub(crate) mod slot;
pub mod state;
pub mod table;

pub use hash::TableHash;
pub use key::FlowKey;
pub use mem::{Backing, Pages};
pub use state::{Direction, TcpFlags, TcpState, Timeouts};
pub use table::{FlowHit, FlowId, FlowInfo, FlowTable, InsertError, Miss, TableCounts};

//! DPDK ports and mbufs.

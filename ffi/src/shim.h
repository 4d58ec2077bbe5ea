/*
 * vipd: C shim over DPDK's static inline functions and macros.
 *
 * DPDK's fast-path API (rte_eth_rx_burst, rte_pktmbuf_*, rte_errno, ...) is made of static
 * inline functions and macros that bindgen cannot bind. Each vipd_* function below is a
 * one-line out-of-line wrapper compiled against the system DPDK headers (see shim.c), so Rust
 * calls the real DPDK code instead of a re-implementation of it.
 */
#ifndef VIPD_SHIM_H
#define VIPD_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* ethdev fast path (static inline, via rte_eth_fp_ops) */
uint16_t vipd_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
			       uint16_t nb_pkts);
uint16_t vipd_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			       uint16_t nb_pkts);

/* RSS hash-function masks (macros built from RTE_BIT64) */
uint64_t vipd_rte_eth_rss_ip(void);
uint64_t vipd_rte_eth_rss_tcp(void);
uint64_t vipd_rte_eth_rss_udp(void);
/* mbuf offload flag telling that hash.rss is valid (macro) */
uint64_t vipd_rte_mbuf_f_rx_rss_hash(void);
/* RX offload: the NIC verifies IPv4 header checksums (RTE_BIT64 macro) */
uint64_t vipd_rte_eth_rx_offload_ipv4_cksum(void);

/* mbuf allocation and release (static inline) */
struct rte_mbuf *vipd_rte_pktmbuf_alloc(struct rte_mempool *mp);
int vipd_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
				unsigned int count);
void vipd_rte_pktmbuf_free(struct rte_mbuf *m);

/* mbuf data access (rte_pktmbuf_mtod is a macro; the rest static inline). The fast path reads
 * these fields from Rust (io::dpdk::mbuf, bindgen layout) so they inline; the wrappers stay as
 * the reference that tests/dpdk_mbuf_ops.rs checks the Rust reads against. */
void *vipd_rte_pktmbuf_mtod(struct rte_mbuf *m);
/* rte_pktmbuf_mtod and rte_pktmbuf_data_len in one call (the hot path's view of a frame) */
void *vipd_rte_pktmbuf_data(struct rte_mbuf *m, uint16_t *data_len);
uint32_t vipd_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t vipd_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint16_t vipd_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t vipd_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t vipd_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
char *vipd_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *vipd_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *vipd_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int vipd_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int vipd_rte_pktmbuf_linearize(struct rte_mbuf *m);
/* hash.rss if ol_flags carries RTE_MBUF_F_RX_RSS_HASH, else 0 with *valid = 0 */
uint32_t vipd_rte_pktmbuf_rss_hash(const struct rte_mbuf *m, int *valid);

/* A bond member's 802.3ad state (rte_eth_bond_8023ad_slave_info). DPDK's struct nests a
 * packed struct holding an aligned one (rte_ether_addr), which Rust cannot lay out: this
 * copies the fields into a plain struct, keys and port numbers in host byte order. */
struct vipd_lacp_member {
	uint32_t selected; /* enum rte_bond_8023ad_selection: 0 unselected, 1 standby, 2 selected */
	uint8_t actor_state;
	uint8_t partner_state;
	uint16_t actor_key;
	uint8_t partner_system[6];
	uint16_t partner_key;
	uint16_t partner_port;
	uint16_t agg_port_id;
};
/* 0, or rte_eth_bond_8023ad_slave_info's negative errno */
int vipd_bond_8023ad_member_info(uint16_t bond_port, uint16_t member_port,
				 struct vipd_lacp_member *out);

/* lcore, errno, cycles */
unsigned int vipd_rte_lcore_id(void);
int vipd_rte_errno(void);
uint64_t vipd_rte_get_tsc_cycles(void);
uint64_t vipd_rte_get_tsc_hz(void);
void vipd_rte_pause(void);

#endif /* VIPD_SHIM_H */

/* vipd: out-of-line wrappers for DPDK's static inline functions and macros (see shim.h). */
#include <string.h>

#include <rte_config.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_eth_bond_8023ad.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#include "shim.h"

uint16_t vipd_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
			       uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t vipd_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			       uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

uint64_t vipd_rte_eth_rss_ip(void) { return RTE_ETH_RSS_IP; }
uint64_t vipd_rte_eth_rss_tcp(void) { return RTE_ETH_RSS_TCP; }
uint64_t vipd_rte_eth_rss_udp(void) { return RTE_ETH_RSS_UDP; }
uint64_t vipd_rte_mbuf_f_rx_rss_hash(void) { return RTE_MBUF_F_RX_RSS_HASH; }
uint64_t vipd_rte_eth_rx_offload_ipv4_cksum(void) { return RTE_ETH_RX_OFFLOAD_IPV4_CKSUM; }

struct rte_mbuf *vipd_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int vipd_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
				unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void vipd_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void *vipd_rte_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

void *vipd_rte_pktmbuf_data(struct rte_mbuf *m, uint16_t *data_len)
{
	*data_len = rte_pktmbuf_data_len(m);
	return rte_pktmbuf_mtod(m, void *);
}
uint32_t vipd_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t vipd_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint16_t vipd_rte_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t vipd_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t vipd_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }

char *vipd_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *vipd_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }

char *vipd_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

int vipd_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
int vipd_rte_pktmbuf_linearize(struct rte_mbuf *m) { return rte_pktmbuf_linearize(m); }

uint32_t vipd_rte_pktmbuf_rss_hash(const struct rte_mbuf *m, int *valid)
{
	if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) {
		*valid = 1;
		return m->hash.rss;
	}
	*valid = 0;
	return 0;
}

unsigned int vipd_rte_lcore_id(void) { return rte_lcore_id(); }
int vipd_rte_errno(void) { return rte_errno; }
uint64_t vipd_rte_get_tsc_cycles(void) { return rte_get_tsc_cycles(); }
uint64_t vipd_rte_get_tsc_hz(void) { return rte_get_tsc_hz(); }
void vipd_rte_pause(void) { rte_pause(); }

int vipd_bond_8023ad_member_info(uint16_t bond_port, uint16_t member_port,
				 struct vipd_lacp_member *out)
{
	struct rte_eth_bond_8023ad_slave_info info;
	int ret = rte_eth_bond_8023ad_slave_info(bond_port, member_port, &info);

	if (ret < 0)
		return ret;
	out->selected = (uint32_t)info.selected;
	out->actor_state = info.actor_state;
	out->partner_state = info.partner_state;
	out->actor_key = rte_be_to_cpu_16(info.actor.key);
	memcpy(out->partner_system, info.partner.system.addr_bytes, sizeof(out->partner_system));
	out->partner_key = rte_be_to_cpu_16(info.partner.key);
	out->partner_port = rte_be_to_cpu_16(info.partner.port_number);
	out->agg_port_id = info.agg_port_id;
	return 0;
}

/* LD_PRELOAD shim for DPDK's l3fwd example in scripts/bench (l3fwd.py): the two things
 * l3fwd asks of a port that the virtual devices here cannot give, and nothing else.
 *
 * - Its mbuf pool is sized for NIC descriptors (NB_MBUF in main.c, ~8k-40k mbufs), but
 *   net_pcap's infinite_rx keeps the whole capture in mbufs of that pool (2M frames for the
 *   1M-flow case): the pool is raised to BENCH_POOL_MBUFS, the count vipd and testpmd get.
 * - It requests RTE_ETH_RX_OFFLOAD_CHECKSUM on every port and queue, which net_pcap lacks
 *   (configure fails with -EINVAL); its forwarding path never reads the verdict (no ol_flags
 *   test in l3fwd's sources), so the request is cut to what the device offers.
 *
 * l3fwd's code and per-packet work are Debian's, unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

typedef struct rte_mempool *(*pool_create_fn)(const char *, unsigned int, unsigned int, uint16_t, uint16_t, int);
typedef int (*configure_fn)(uint16_t, uint16_t, uint16_t, const struct rte_eth_conf *);
typedef int (*rxq_setup_fn)(uint16_t, uint16_t, uint16_t, unsigned int, const struct rte_eth_rxconf *,
			    struct rte_mempool *);

struct rte_mempool *
rte_pktmbuf_pool_create(const char *name, unsigned int n, unsigned int cache_size, uint16_t priv_size,
			uint16_t data_room_size, int socket_id)
{
	pool_create_fn real = (pool_create_fn)dlsym(RTLD_NEXT, "rte_pktmbuf_pool_create");
	const char *want = getenv("BENCH_POOL_MBUFS");
	unsigned long w = want ? strtoul(want, NULL, 10) : 0;

	if (w > n && w <= 0xffffffffUL)
		n = (unsigned int)w;
	return real(name, n, cache_size, priv_size, data_room_size, socket_id);
}

int
rte_eth_dev_configure(uint16_t port, uint16_t nb_rx, uint16_t nb_tx, const struct rte_eth_conf *conf)
{
	configure_fn real = (configure_fn)dlsym(RTLD_NEXT, "rte_eth_dev_configure");
	struct rte_eth_dev_info info;
	struct rte_eth_conf c;

	if (conf == NULL || rte_eth_dev_info_get(port, &info) != 0)
		return real(port, nb_rx, nb_tx, conf);
	c = *conf;
	c.rxmode.offloads &= info.rx_offload_capa;
	return real(port, nb_rx, nb_tx, &c);
}

int
rte_eth_rx_queue_setup(uint16_t port, uint16_t queue, uint16_t nb_desc, unsigned int socket,
		       const struct rte_eth_rxconf *rx_conf, struct rte_mempool *pool)
{
	rxq_setup_fn real = (rxq_setup_fn)dlsym(RTLD_NEXT, "rte_eth_rx_queue_setup");
	struct rte_eth_dev_info info;
	struct rte_eth_rxconf c;

	if (rx_conf == NULL || rte_eth_dev_info_get(port, &info) != 0)
		return real(port, queue, nb_desc, socket, rx_conf, pool);
	c = *rx_conf;
	c.offloads &= info.rx_offload_capa;
	return real(port, queue, nb_desc, socket, &c, pool);
}

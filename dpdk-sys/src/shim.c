/* Exported wrappers around DPDK's static inline functions. Each one is a
 * direct call; see shim.h. */
#include "shim.h"
#include <rte_prefetch.h>

int ss_errno(void) { return rte_errno; }

uint16_t ss_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t ss_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *ss_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int ss_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void ss_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

char *ss_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }

int ss_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }

uint16_t ss_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }

uint8_t *ss_pktmbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }

uint16_t ss_pktmbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }

uint32_t ss_pktmbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }

uint16_t ss_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

uint32_t ss_pktmbuf_rss(const struct rte_mbuf *m, int *valid)
{
	if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) {
		*valid = 1;
		return m->hash.rss;
	}
	*valid = 0;
	return 0;
}

unsigned ss_lcore_id(void) { return rte_lcore_id(); }

uint64_t ss_tsc(void) { return rte_get_tsc_cycles(); }

uint64_t ss_tsc_hz(void) { return rte_get_tsc_hz(); }

uint32_t ss_softrss(const uint32_t *tuple, uint32_t words, const uint8_t *key)
{
	/* rte_softrss takes the tuple in host byte order, as NIC datasheets
	 * describe the hash input. */
	return rte_softrss((uint32_t *)tuple, words, key);
}

const char *ss_version(void) { return rte_version(); }

void ss_prefetch0(const void *p) { rte_prefetch0(p); }

/* Headers bound by bindgen, and exported wrappers for DPDK's static inline
 * functions that Rust cannot call directly. Every wrapper is prefixed ss_. */
#ifndef SYNSHARE_DPDK_SHIM_H
#define SYNSHARE_DPDK_SHIM_H

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_thash.h>
#include <rte_version.h>

int ss_errno(void);
uint16_t ss_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t ss_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *ss_pktmbuf_alloc(struct rte_mempool *mp);
int ss_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void ss_pktmbuf_free(struct rte_mbuf *m);
char *ss_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int ss_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t ss_pktmbuf_tailroom(const struct rte_mbuf *m);
uint8_t *ss_pktmbuf_data(struct rte_mbuf *m);
uint16_t ss_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t ss_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t ss_pktmbuf_nb_segs(const struct rte_mbuf *m);
/* The NIC's RSS hash, when the port delivered one; returns 0 and sets *valid
 * to 0 otherwise. */
uint32_t ss_pktmbuf_rss(const struct rte_mbuf *m, int *valid);
unsigned ss_lcore_id(void);
uint64_t ss_tsc(void);
uint64_t ss_tsc_hz(void);
uint32_t ss_softrss(const uint32_t *tuple, uint32_t words, const uint8_t *key);
const char *ss_version(void);
void ss_prefetch0(const void *p);

#endif

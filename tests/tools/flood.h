/* What the flood senders share: a monotonic clock and the messages of a
 * sendmmsg batch. Header-only; each sender includes it once. */
#ifndef SS_FLOOD_H
#define SS_FLOOD_H

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Makes MSG one message of LEN bytes at BUF, to TO (IOV is its own). */
static inline void batch_msg(struct mmsghdr *msg, struct iovec *iov, void *buf, size_t len,
                             struct sockaddr_in *to) {
    iov->iov_base = buf;
    iov->iov_len = len;
    memset(msg, 0, sizeof *msg);
    msg->msg_hdr.msg_name = to;
    msg->msg_hdr.msg_namelen = sizeof *to;
    msg->msg_hdr.msg_iov = iov;
    msg->msg_hdr.msg_iovlen = 1;
}

#endif

/* Spoofed bare TCP ACKs for the flood tests: COUNT segments to VIP:PORT from
 * SOURCES addresses starting at FIRST (random ports, sequence and
 * acknowledgement numbers), every other one with a wrong TCP checksum, as
 * fast as raw sockets go (sendmmsg). Prints the number sent and the
 * seconds it took. Test traffic only: the tests point it at addresses
 * inside their own namespaces.
 *
 *   ackflood VIP PORT COUNT FIRST SOURCES
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flood.h"

#define BATCH 128
#define LEN 40

static uint16_t sum16(const uint8_t *p, size_t n, uint32_t acc) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: ackflood VIP PORT COUNT FIRST SOURCES\n");
        return 2;
    }
    struct in_addr vip, first;
    if (inet_pton(AF_INET, argv[1], &vip) != 1 || inet_pton(AF_INET, argv[4], &first) != 1) {
        fprintf(stderr, "ackflood: bad address\n");
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[2]);
    unsigned long long count = strtoull(argv[3], NULL, 10);
    uint32_t sources = (uint32_t)atoi(argv[5]);
    if (sources == 0) sources = 1;
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (s < 0) {
        perror("ackflood: socket");
        return 1;
    }
    static uint8_t pkt[BATCH][LEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = vip};
    unsigned seed = (unsigned)getpid();
    unsigned long long sent = 0;
    double start = now();
    while (sent < count) {
        int n = (int)(count - sent < BATCH ? count - sent : BATCH);
        for (int i = 0; i < n; i++) {
            uint8_t *ip = pkt[i], *tcp = pkt[i] + 20;
            uint32_t src = htonl(ntohl(first.s_addr) + (uint32_t)rand_r(&seed) % sources);
            memset(ip, 0, LEN);
            ip[0] = 0x45;
            ip[2] = 0;
            ip[3] = LEN;
            ip[8] = 64;
            ip[9] = 6;
            memcpy(ip + 12, &src, 4);
            memcpy(ip + 16, &vip, 4);
            uint16_t c = sum16(ip, 20, 0);
            ip[10] = (uint8_t)(c >> 8);
            ip[11] = (uint8_t)c;
            uint16_t sport = (uint16_t)(1024 + rand_r(&seed) % 60000);
            tcp[0] = (uint8_t)(sport >> 8);
            tcp[1] = (uint8_t)sport;
            tcp[2] = (uint8_t)(port >> 8);
            tcp[3] = (uint8_t)port;
            uint32_t seq = (uint32_t)rand_r(&seed) ^ ((uint32_t)rand_r(&seed) << 16);
            uint32_t ack = (uint32_t)rand_r(&seed) ^ ((uint32_t)rand_r(&seed) << 16);
            memcpy(tcp + 4, &seq, 4);
            memcpy(tcp + 8, &ack, 4);
            tcp[12] = 5 << 4;
            tcp[13] = 0x10; /* ACK */
            tcp[14] = 0xff;
            tcp[15] = 0xff;
            /* Checksum over the pseudo header and the segment. */
            uint8_t pseudo[12 + 20];
            memcpy(pseudo, ip + 12, 8);
            pseudo[8] = 0;
            pseudo[9] = 6;
            pseudo[10] = 0;
            pseudo[11] = 20;
            memcpy(pseudo + 12, tcp, 20);
            c = sum16(pseudo, sizeof pseudo, 0);
            if ((sent + (unsigned long long)i) % 2) c ^= 0x5a5a; /* every other one wrong */
            tcp[16] = (uint8_t)(c >> 8);
            tcp[17] = (uint8_t)c;
            batch_msg(&msgs[i], &iov[i], pkt[i], LEN, &to);
        }
        int k = sendmmsg(s, msgs, (unsigned)n, 0);
        if (k > 0) sent += (unsigned long long)k;
    }
    printf("%llu %.2f\n", sent, now() - start);
    return 0;
}

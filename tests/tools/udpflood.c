/* A fast UDP sender for the flood tests: datagrams of junk to HOST:PORT for
 * SECONDS, in batches (sendmmsg), from this namespace's own address.
 * Prints the number sent. Test traffic only: the tests point it at
 * addresses inside their own namespaces.
 *
 *   udpflood HOST PORT SECONDS [SIZE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flood.h"

#define BATCH 256

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: udpflood HOST PORT SECONDS [SIZE]\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "udpflood: bad address %s\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[3]);
    size_t size = argc > 4 ? (size_t)atoi(argv[4]) : 64;
    if (size < 8 || size > 1400) size = 64;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("udpflood: socket");
        return 1;
    }
    static unsigned char junk[BATCH][1400];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    unsigned seed = (unsigned)getpid();
    for (int i = 0; i < BATCH; i++) {
        for (size_t j = 0; j < size; j++) junk[i][j] = (unsigned char)rand_r(&seed);
        memcpy(junk[i], "SSX2\x03", 5); /* looks like ours, is not */
        batch_msg(&msgs[i], &iov[i], junk[i], size, &to);
    }
    unsigned long long sent = 0;
    double end = now() + seconds;
    while (now() < end) {
        int n = sendmmsg(s, msgs, BATCH, 0);
        if (n > 0) sent += (unsigned long long)n;
    }
    printf("%llu\n", sent);
    return 0;
}

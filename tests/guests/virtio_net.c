/* virtio-net from a unikernel (<pyrite/virtio.h>): a tiny ARP + ICMP echo host.
 *
 *   virtio_net GUEST_IP HOST_IP N
 *
 * (b) first, as a client: sends an ARP request for HOST_IP and prints
 *     "arp_reply ip=HOST_IP mac=<its MAC>", then an ICMP echo request (id 0x7079, seq 1,
 *     56 bytes of pattern) to it and prints "ping_reply seq=1 ttl=<ttl> bytes=<payload bytes>
 *     payload_ok=<0|1>";
 * (a) then prints "ready" and, as a server, answers ARP requests for GUEST_IP and ICMP echo
 *     requests to it until it has answered N echo requests, printing "echo_served=<i>"
 *     for each, and exits 0. ARP and echo requests are answered in both phases.
 *
 * Also prints "mac=<its own MAC>". Exit status: 0 success, 2 bad arguments, 3 no network
 * device, 4 open or MAC failed, 5 no ARP reply, 6 no echo reply, 7 fewer than N echo
 * requests within 60 s, 8 send failed, 9 receive failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/virtio.h>

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define PING_ID 0x7079
#define PING_PAYLOAD 56

static struct virtio_net *net;
static uint8_t my_mac[6], my_ip[4], host_ip[4], host_mac[6];
static int have_host_mac, got_echo_reply, echo_served;
static uint8_t frame[2048], out[2048];

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static uint16_t checksum(const uint8_t *p, size_t n)
{
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += get16(p + i);
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static int parse_ip(const char *s, uint8_t ip[4])
{
    for (int i = 0; i < 4; i++) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v > 255 || (i < 3 ? *end != '.' : *end != 0))
            return -1;
        ip[i] = (uint8_t)v;
        s = end + 1;
    }
    return 0;
}

static void send_frame(size_t len)
{
    int err = virtio_net_send(net, out, len);
    if (err) {
        printf("error send %d\n", err);
        exit(8);
    }
}

static void send_arp(uint16_t op, const uint8_t *dst_mac, const uint8_t *target_mac, const uint8_t *target_ip)
{
    memcpy(out, dst_mac, 6);
    memcpy(out + 6, my_mac, 6);
    put16(out + 12, ETH_ARP);
    uint8_t *a = out + 14;
    put16(a, 1);                        /* Ethernet */
    put16(a + 2, ETH_IP);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, my_mac, 6);
    memcpy(a + 14, my_ip, 4);
    memcpy(a + 18, target_mac, 6);
    memcpy(a + 24, target_ip, 4);
    send_frame(14 + 28);
}

/* An IPv4 + ICMP echo frame to dst: header fields, then `payload` bytes of data. */
static void send_icmp(const uint8_t *dst_mac, const uint8_t *dst_ip, uint8_t type, uint16_t id,
                      uint16_t seq, const uint8_t *payload, size_t n)
{
    memcpy(out, dst_mac, 6);
    memcpy(out + 6, my_mac, 6);
    put16(out + 12, ETH_IP);
    uint8_t *ip = out + 14, *icmp = ip + 20;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + 8 + n));
    ip[8] = 64;                         /* TTL */
    ip[9] = 1;                          /* ICMP */
    memcpy(ip + 12, my_ip, 4);
    memcpy(ip + 16, dst_ip, 4);
    put16(ip + 10, checksum(ip, 20));
    icmp[0] = type;
    icmp[1] = 0;
    put16(icmp + 2, 0);
    put16(icmp + 4, id);
    put16(icmp + 6, seq);
    memmove(icmp + 8, payload, n);
    put16(icmp + 2, checksum(icmp, 8 + n));
    send_frame(14 + 20 + 8 + n);
}

static void handle(size_t len)
{
    if (len < 14)
        return;
    uint16_t type = get16(frame + 12);
    if (type == ETH_ARP && len >= 14 + 28) {
        uint8_t *a = frame + 14;
        if (get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
            return;
        if (get16(a + 6) == 1 && memcmp(a + 24, my_ip, 4) == 0) {
            uint8_t mac[6], ip[4];
            memcpy(mac, a + 8, 6);
            memcpy(ip, a + 14, 4);
            send_arp(2, mac, mac, ip);
        } else if (get16(a + 6) == 2 && memcmp(a + 14, host_ip, 4) == 0 && !have_host_mac) {
            memcpy(host_mac, a + 8, 6);
            have_host_mac = 1;
            printf("arp_reply ip=%u.%u.%u.%u mac=%02x:%02x:%02x:%02x:%02x:%02x\n", host_ip[0], host_ip[1],
                   host_ip[2], host_ip[3], host_mac[0], host_mac[1], host_mac[2], host_mac[3],
                   host_mac[4], host_mac[5]);
        }
        return;
    }
    if (type != ETH_IP || len < 14 + 20 + 8)
        return;
    uint8_t *ip = frame + 14;
    size_t ihl = (size_t)(ip[0] & 0xF) * 4, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 || 14 + total > len || ip[9] != 1)
        return;
    if (memcmp(ip + 16, my_ip, 4) != 0 || checksum(ip, ihl) != 0)
        return;
    uint8_t *icmp = ip + ihl;
    size_t icmp_len = total - ihl;
    if (checksum(icmp, icmp_len) != 0)
        return;
    if (icmp[0] == ICMP_ECHO_REQUEST) {
        uint8_t src_mac[6], src_ip[4];
        memcpy(src_mac, frame + 6, 6);
        memcpy(src_ip, ip + 12, 4);
        send_icmp(src_mac, src_ip, ICMP_ECHO_REPLY, get16(icmp + 4), get16(icmp + 6), icmp + 8, icmp_len - 8);
        printf("echo_served=%d\n", ++echo_served);
    } else if (icmp[0] == ICMP_ECHO_REPLY && get16(icmp + 4) == PING_ID && get16(icmp + 6) == 1 &&
               memcmp(ip + 12, host_ip, 4) == 0 && !got_echo_reply) {
        size_t n = icmp_len - 8;
        int ok = n == PING_PAYLOAD;
        for (size_t i = 0; ok && i < n; i++)
            ok = icmp[8 + i] == (uint8_t)(i * 7 + 3);
        got_echo_reply = 1;
        printf("ping_reply seq=1 ttl=%u bytes=%u payload_ok=%d\n", ip[8], (unsigned)n, ok);
    }
}

/* Handle frames for up to timeout_us, or until *flag is set (flag NULL: the whole time). */
static void pump(uint64_t timeout_us, const int *flag, int until_served)
{
    uint64_t waited = 0, slice = 10000;
    while (waited < timeout_us) {
        if (flag && *flag)
            return;
        if (until_served && echo_served >= until_served)
            return;
        long n = virtio_net_recv(net, frame, sizeof frame, slice);
        if (n == -EAGAIN) {
            waited += slice;
            continue;
        }
        if (n < 0) {
            printf("error recv %ld\n", n);
            exit(9);
        }
        handle((size_t)n);
    }
}

int main(int argc, char **argv)
{
    char *end;
    if (argc != 4 || parse_ip(argv[1], my_ip) || parse_ip(argv[2], host_ip))
        return 2;
    int pings = (int)strtol(argv[3], &end, 10);
    if (*end || pings < 0)
        return 2;
    printf("net_count=%d\n", virtio_net_count());
    if (virtio_net_count() < 1)
        return 3;
    int err = virtio_net_open(0, &net);
    if (!err)
        err = virtio_net_mac(net, my_mac);
    if (err) {
        printf("error open %d\n", err);
        return 4;
    }
    printf("mac=%02x:%02x:%02x:%02x:%02x:%02x\n", my_mac[0], my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5]);

    static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero[6] = {0};
    for (int attempt = 0; attempt < 5 && !have_host_mac; attempt++) {
        send_arp(1, broadcast, zero, host_ip);
        pump(1000000, &have_host_mac, 0);
    }
    if (!have_host_mac)
        return 5;
    uint8_t payload[PING_PAYLOAD];
    for (unsigned i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    for (int attempt = 0; attempt < 5 && !got_echo_reply; attempt++) {
        send_icmp(host_mac, host_ip, ICMP_ECHO_REQUEST, PING_ID, 1, payload, sizeof payload);
        pump(1000000, &got_echo_reply, 0);
    }
    if (!got_echo_reply)
        return 6;
    printf("ready\n");
    pump(60000000, NULL, pings);
    return echo_served >= pings ? 0 : 7;
}

/* getrandom: the first virtio entropy device if there is one, else the CPU's RDRAND. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/virtio.h>
#include "sys.h"
#include "../libos_internal.h"

static int has_rdrand(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    return (r[2] >> 30) & 1;
}

/* n bytes from RDRAND (retried, as Intel advises, up to 10 times a word): 0, or -1. */
static int rdrand_fill(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        uint64_t v;
        unsigned char ok = 0;
        for (int tries = 0; !ok && tries < 10; tries++)
            __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok) : : "cc");
        if (!ok)
            return -1;
        size_t k = n < 8 ? n : 8;
        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
    return 0;
}

/* Seed bytes for the C library at start (AT_RANDOM): RDRAND, or else the TSC mixed
 * (not secret; said so in the README). No device is probed this early. */
void pyrite_boot_random(uint8_t out[16])
{
    if (has_rdrand() && rdrand_fill(out, 16) == 0)
        return;
    uint64_t z = rdtsc();
    for (int i = 0; i < 2; i++) {
        z += 0x9e3779b97f4a7c15ull;
        uint64_t x = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        x ^= x >> 31;
        memcpy(out + 8 * i, &x, 8);
    }
}

long sys_getrandom(void *buf, size_t n, unsigned flags)
{
    if (!n)
        return 0;
    long got = virtio_rng_read(buf, n);
    if (got > 0 || (got < 0 && got != -ENODEV))
        return got;
    if (has_rdrand() && rdrand_fill(buf, n) == 0)
        return (long)n;
    return -EAGAIN;                          /* no entropy source at all */
}

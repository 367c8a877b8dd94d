/* virtio-rng from a unikernel: reads N bytes (argument, default 4096) twice with
 * virtio_rng_read() (<pyrite/virtio.h>) and reports "rng_read=<returned>",
 * "distinct=<number of distinct byte values>", "all_equal=<0|1>" and
 * "reads_differ=<0|1>" (the two reads are not the same bytes).
 *
 * Exit status: 0 success, 2 bad argument, 3 no entropy device (-ENODEV), 4 device refused
 * (-ENOTSUP), 5 other error, 6 fewer bytes than asked, 7 all bytes equal, 8 both reads
 * equal, 12 out of memory. Errors print "error rng <code>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/virtio.h>

int main(int argc, char **argv)
{
    char *end = NULL;
    size_t n = argc > 1 ? strtoul(argv[1], &end, 0) : 4096;
    if ((argc > 1 && *end) || n < 2)
        return 2;
    uint8_t *a = malloc(n), *b = malloc(n);
    if (!a || !b)
        return 12;
    long got = virtio_rng_read(a, n);
    printf("rng_read=%ld\n", got);
    if (got < 0) {
        printf("error rng %ld\n", got);
        return got == -ENODEV ? 3 : got == -ENOTSUP ? 4 : 5;
    }
    if ((size_t)got != n)
        return 6;
    int seen[256] = {0}, distinct = 0;
    for (size_t i = 0; i < n; i++)
        distinct += !seen[a[i]]++;
    printf("distinct=%d\n", distinct);
    printf("all_equal=%d\n", distinct == 1);
    got = virtio_rng_read(b, n);
    if (got != (long)n) {
        printf("error rng %ld\n", got);
        return got < 0 ? 5 : 6;
    }
    int differ = memcmp(a, b, n) != 0;
    printf("reads_differ=%d\n", differ);
    if (distinct == 1)
        return 7;
    return differ ? 0 : 8;
}

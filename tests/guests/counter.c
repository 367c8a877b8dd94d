/* Counts at CPL 3: "count=N" on the serial port for N = 1, 2, ... up to argv[1] (default
 * 1000), each followed by a short busy wait, then "sum=S" (the sum of every count, kept in
 * memory) and exit status 0. A snapshot taken mid-run and loaded again must continue the
 * sequence without a gap or a repeat and end with the same sum. */
#include <stdio.h>
#include <stdlib.h>

static volatile unsigned long sum;

int main(int argc, char **argv)
{
    unsigned long limit = argc > 1 ? strtoul(argv[1], NULL, 0) : 1000;
    for (unsigned long n = 1; n <= limit; n++) {
        sum += n;
        printf("count=%lu\n", n);
        for (volatile unsigned long spin = 0; spin < 200000; spin++)
            ;
    }
    printf("sum=%lu\n", sum);
    return 0;
}

/* Prints "time=<seconds since 1970>" every 100 ms of monotonic time, argv[1] times
 * (default 50): a snapshot restored later must show the wall clock of the restore. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    int lines = argc > 1 ? atoi(argv[1]) : 50;
    for (int i = 0; i < lines; i++) {
        printf("time=%lld\n", (long long)time(NULL));
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        do
            clock_gettime(CLOCK_MONOTONIC, &now);
        while ((now.tv_sec - start.tv_sec) * 1000000000LL + now.tv_nsec - start.tv_nsec < 100000000LL);
    }
    return 0;
}

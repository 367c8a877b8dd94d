/* The VM generation ID as the library OS finds it, and rand(): prints
 * "vmgenid=<32 hex digits, memory order> rand=<rand()>" ("vmgenid=none" without a VMGenID)
 * at start, then once per line read from the serial port until a line "quit" (exit 0).
 * argv[1] "once": print once and exit; "every" MS: print every MS milliseconds, forever.
 * With VMGENID_GSI=n in the environment it also counts the interrupts on GSI n (the VMM's
 * notification of a new ID) and adds " notified=<count>".
 * Restored from a snapshot, it must print a new ID and, though its memory (the rand()
 * state included) is the snapshot's, a random number of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pyrite/arch.h>
#include <pyrite/vmgenid.h>

static volatile unsigned notified;
static int counting;

PYRITE_IRQ_HANDLER static void on_notify(void) { notified++; }   /* CPL 0: keep it tiny */

static void report(void)
{
    uint8_t id[VMGENID_SIZE];
    if (vmgenid_read(id) == 0) {
        printf("vmgenid=");
        for (int i = 0; i < VMGENID_SIZE; i++)
            printf("%02x", id[i]);
    } else {
        printf("vmgenid=none");
    }
    printf(" rand=%d", rand());
    if (counting)
        printf(" notified=%u", notified);
    printf("\n");
}

int main(int argc, char **argv)
{
    const char *gsi = getenv("VMGENID_GSI");
    counting = gsi && pyrite_irq_route((unsigned)strtoul(gsi, NULL, 0), on_notify) == 0;
    report();
    if (argc > 1 && strcmp(argv[1], "once") == 0)
        return 0;
    if (argc > 2 && strcmp(argv[1], "every") == 0) {
        unsigned ms = (unsigned)strtoul(argv[2], NULL, 0);
        for (;;) {
            usleep(ms * 1000);
            report();
        }
    }
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "quit", 4) == 0)
            return 0;
        report();
    }
    return 0;
}

/* Stacks and their guard pages. argv[1]:
 *   "use <KiB>"      recurses until it has used about <KiB> KiB of stack, then prints
 *                    "used <KiB> KiB" and exits 0
 *   "recurse"        recurses without end (a stack overflow)
 *   "below <stack>"  writes just under the bottom of one of the library OS's stacks, into its
 *                    guard page: "app", "crash", "kstack" (TSS.RSP0) or "dfstack" (IST1) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char pyrite_ustack_bottom[], pyrite_crash_stack_bottom[], pyrite_kstack_bottom[], pyrite_dfstack_bottom[];

/* About 1 KiB of frame per call, touched so that the compiler keeps it. */
static unsigned long descend(volatile char *above, unsigned long depth, unsigned long target)
{
    volatile char frame[1000];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = above ? above[0] : 0;
    if (depth == target)
        return (uintptr_t)frame;
    return descend(frame, depth + 1, target) + frame[sizeof frame - 1];
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "recurse";
    printf("stack: %s\n", what);
    if (strcmp(what, "use") == 0 && argc > 2) {
        unsigned long kib = strtoul(argv[2], NULL, 10);
        unsigned long top = (uintptr_t)&kib;
        unsigned long deepest = descend(NULL, 0, kib);
        printf("used %lu KiB\n", (top - deepest) >> 10);
        return 0;
    }
    if (strcmp(what, "recurse") == 0)
        return (int)descend(NULL, 0, ~0ul);
    if (strcmp(what, "below") == 0 && argc > 2) {
        static const struct { const char *name; char *bottom; } stacks[] = {
            {"app", pyrite_ustack_bottom}, {"crash", pyrite_crash_stack_bottom},
            {"kstack", pyrite_kstack_bottom}, {"dfstack", pyrite_dfstack_bottom},
        };
        for (unsigned i = 0; i < sizeof stacks / sizeof stacks[0]; i++)
            if (strcmp(argv[2], stacks[i].name) == 0)
                *(volatile char *)(stacks[i].bottom - 1) = 1;
        puts("unreachable");
        return 1;
    }
    puts("unknown command");
    return 2;
}

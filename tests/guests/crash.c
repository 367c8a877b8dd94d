/* Crashes as argv[1] says: "div0" (divide error), "null" (write through a null pointer),
 * "ud" (invalid opcode). The library OS prints a crash report and exits with 128 + vector. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "ud";
    printf("crashing: %s\n", what);
    if (strcmp(what, "div0") == 0) {
        unsigned eax = 100, edx = 0, zero = 0;
        __asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "r"(zero));   /* gcc may not divide by a literal 0 */
        printf("%u\n", eax);
    } else if (strcmp(what, "null") == 0) {
        *(volatile int *)(uintptr_t)0 = 1;                  /* page 0 is not mapped */
    } else
        __asm__ volatile("ud2");
    puts("unreachable");
    return 1;
}

/* Breaks the IDT and faults: with no valid gate for #UD, #NP or #DF the CPU shuts down
 * (triple fault). The VMM must report a crash; "unreachable" must never appear. */
#include <stdio.h>
#include <string.h>

extern char pyrite_idt[256 * 16];

int main(void)
{
    puts("breaking the IDT");
    memset(pyrite_idt, 0, sizeof pyrite_idt);   /* the IDT is in user-accessible memory */
    __asm__ volatile("ud2");
    puts("unreachable");
    return 1;
}

/* Prints "tick N" lines as it makes progress (a CPL-3 busy loop between them) and watches
 * the i8042 for Ctrl+Alt+Del (Firecracker sends set-2 make codes 0x14, 0x11, 0xe0 0x71;
 * set-1 0x1d, 0x38, 0xe0 0x53 is accepted too): then it prints
 * "ctrl-alt-del" and resets the machine through the i8042 (0xfe to port 0x64), as Linux
 * does with reboot=k. Used by the API life-cycle tests. */
#include <stdint.h>
#include <stdio.h>
#include <pyrite/arch.h>

static int saw_ctrl_alt_del(void)
{
    static int ctrl, alt, extended;
    while (inb(0x64) & 1) {
        uint8_t code = inb(0x60);
        if (code == 0xe0) { extended = 1; continue; }
        if (code == 0x14 || code == 0x1d) ctrl = 1;
        else if (code == 0x11 || code == 0x38) alt = 1;
        else if (extended && (code == 0x71 || code == 0x53) && ctrl && alt) return 1;
        extended = 0;
    }
    return 0;
}

int main(void)
{
    uint64_t x = 1;
    for (uint64_t tick = 0;; tick++) {
        printf("tick %lu\n", tick);
        for (uint64_t i = 0; i < 20000000ull; i++) {
            x = x * 6364136223846793005ull + i;
            __asm__ volatile("" : "+r"(x));
        }
        if (saw_ctrl_alt_del()) {
            puts("ctrl-alt-del");
            outb(0x64, 0xfe);
            for (;;) __asm__ volatile("pause");
        }
    }
}

/* Reads lines from the serial port (interrupt-driven input) and prints each back as
 * "echo:<line>" until a line "quit"; then exits with the number of lines echoed. */
#include <stdio.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/serial.h>

int main(void)
{
    char line[256];
    int lines = 0;
    if (serial_rx_irq_enable() != 0)
        puts("serial input: no IOAPIC, polling");
    printf("ready irq=%d\n", serial_rx_irq_enabled());
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "quit") == 0)
            break;
        printf("echo:%s\n", line);
        lines++;
    }
    printf("interrupts=%u\n", pyrite_irq_count);
    return lines;
}

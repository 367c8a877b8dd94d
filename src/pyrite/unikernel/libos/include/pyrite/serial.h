/* 16550 UART at 0x3f8 (COM1, IRQ 4). */
#ifndef PYRITE_SERIAL_H
#define PYRITE_SERIAL_H

#include <stddef.h>

#define SERIAL_COM1 0x3F8
#define SERIAL_IRQ  4

void serial_init(void);
void serial_write(const char *data, size_t n);

/* Input. Interrupt-driven once serial_rx_irq_enable() succeeded (the interrupt
 * handler buffers bytes at CPL 0); polled otherwise. */
int serial_rx_irq_enable(void);
int serial_rx_irq_enabled(void);
/* End of input (the VMM's break, see drivers/serial.c) reads as SERIAL_EOF, and as 0 from
 * serial_read; it stays while no input follows it. */
#define SERIAL_EOF (-2)
int serial_read_byte(void);                 /* blocks; returns 0..255 or SERIAL_EOF */
int serial_try_read_byte(void);             /* -1 if nothing is there */
size_t serial_read(char *buf, size_t n);    /* blocks for the first byte, then takes what is there
                                               (up to an end of input); 0 at end of input */

#endif

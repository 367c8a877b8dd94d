/* 16550 UART on COM1: polled output, interrupt-driven (or polled) input. */
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/serial.h>

#define RBR 0   /* receive buffer (read) / transmit holding (write) */
#define IER 1
#define IIR 2
#define IIR_FIFOS_ENABLED 0xC0
#define LCR 3
#define MCR 4
#define LSR 5
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY  0x20
#define IER_RX_AVAILABLE 0x01
#define MCR_DTR_RTS_OUT2 0x0B   /* OUT2 gates the interrupt line on PC UARTs */
#define FIFO_DEPTH 16

#define RX_RING 4096            /* power of two */
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;   /* head: written at CPL 0; tail: read at CPL 3 */
static int rx_irq;
static size_t tx_burst = 1;

/* Move what the UART holds into the ring (dropping bytes when it is full). Runs at
 * CPL 0 from the interrupt, or at CPL 3 with interrupts off. */
static void rx_drain(void)
{
    while (inb(SERIAL_COM1 + LSR) & LSR_DATA_READY) {
        uint8_t byte = inb(SERIAL_COM1 + RBR);
        if (rx_head - rx_tail < RX_RING) {
            rx_ring[rx_head % RX_RING] = byte;
            __asm__ volatile("" ::: "memory");
            rx_head++;
        }
    }
}

/* FCR is never written: enabling or resetting the FIFOs would drop input typed
 * before the guest started. */
void serial_init(void)
{
    outb(SERIAL_COM1 + IER, 0);
    outb(SERIAL_COM1 + LCR, 0x03);             /* 8N1, DLAB off; the VMM's baud rate stands */
    outb(SERIAL_COM1 + MCR, MCR_DTR_RTS_OUT2);
    if ((inb(SERIAL_COM1 + IIR) & IIR_FIFOS_ENABLED) == IIR_FIFOS_ENABLED)
        tx_burst = FIFO_DEPTH;
}

/* THR empty means the whole transmit FIFO is free: with FIFOs, one status read per
 * 16 bytes; without, one per byte. */
void serial_write(const char *data, size_t n)
{
    while (n) {
        while (!(inb(SERIAL_COM1 + LSR) & LSR_THR_EMPTY))
            cpu_relax();
        size_t chunk = n < tx_burst ? n : tx_burst;
        for (size_t i = 0; i < chunk; i++)
            outb(SERIAL_COM1 + RBR, (uint8_t)data[i]);
        data += chunk;
        n -= chunk;
    }
}

int serial_rx_irq_enable(void)
{
    if (rx_irq)
        return 0;
    if (pyrite_irq_route(SERIAL_IRQ, rx_drain) != 0)
        return -1;
    rx_irq = 1;
    outb(SERIAL_COM1 + IER, IER_RX_AVAILABLE);
    /* Bytes that arrived before IER was set raised no interrupt: take them now. */
    irq_disable();
    rx_drain();
    irq_enable();
    return 0;
}

int serial_rx_irq_enabled(void) { return rx_irq; }

int serial_try_read_byte(void)
{
    if (!rx_irq)
        rx_drain();
    if (rx_tail == rx_head)
        return -1;
    int byte = rx_ring[rx_tail % RX_RING];
    __asm__ volatile("" ::: "memory");
    rx_tail++;
    return byte;
}

int serial_read_byte(void)
{
    for (;;) {
        uint32_t seen = pyrite_irq_count;
        int byte = serial_try_read_byte();
        if (byte >= 0)
            return byte;
        if (rx_irq)
            wait_for_irq(seen);
        else
            cpu_relax();
    }
}

size_t serial_read(char *buf, size_t n)
{
    if (!n)
        return 0;
    buf[0] = (char)serial_read_byte();
    size_t got = 1;
    int byte;
    while (got < n && (byte = serial_try_read_byte()) >= 0)
        buf[got++] = (char)byte;
    return got;
}

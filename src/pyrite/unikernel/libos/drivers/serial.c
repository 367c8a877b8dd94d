/* 16550 UART on COM1: polled output, interrupt-driven (or polled) input.
 *
 * End of input is a break (LSR.BI with its 0 character): pyrite sends one after the last
 * byte of host input (see the VMM's console.py). It is a mark in the input stream: reads
 * return 0 there (every read, while nothing follows it: end of file stays, as on a pipe),
 * and input that comes after it is read after that 0, as after Ctrl-D on a terminal. */
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
#define LSR_BREAK      0x10
#define LSR_THR_EMPTY  0x20
#define IER_RX_AVAILABLE 0x01
#define MCR_DTR_RTS_OUT2 0x0B   /* OUT2 gates the interrupt line on PC UARTs */
#define FIFO_DEPTH 16

#define RX_RING 4096            /* power of two */
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;   /* head: written at CPL 0; tail: read at CPL 3 */
/* The latest end-of-input mark: stream position (a value of rx_head) and a sequence number,
 * written by rx_drain (odd while it writes); read at CPL 3 as a seqlock. */
static volatile uint32_t eof_pos, eof_seq;
static uint32_t eof_reported_seq, eof_passed_seq;   /* CPL 3: the mark read as 0 / read past */
static int rx_irq;
static volatile int rx_throttled;           /* the ring filled up: the interrupt is off (IER 0) */
static size_t tx_burst = 1;

/* Move what the UART holds into the ring. When the ring is full the rest stays in the UART
 * (and in the VMM: backpressure) and the interrupt goes off until a reader makes room. Runs
 * at CPL 0 from the interrupt, or at CPL 3 with interrupts off or polling. */
static PYRITE_IRQ_HANDLER void rx_drain(void)
{
    uint8_t lsr;
    while ((lsr = inb(SERIAL_COM1 + LSR)) & LSR_DATA_READY) {
        if (rx_head - rx_tail == RX_RING) {
            if (rx_irq) {
                outb(SERIAL_COM1 + IER, 0);
                rx_throttled = 1;
            }
            return;
        }
        uint8_t byte = inb(SERIAL_COM1 + RBR);
        if (lsr & LSR_BREAK) {              /* its character (0) is not input */
            eof_seq++;
            __asm__ volatile("" ::: "memory");
            eof_pos = rx_head;
            __asm__ volatile("" ::: "memory");
            eof_seq++;
            continue;
        }
        rx_ring[rx_head % RX_RING] = byte;
        __asm__ volatile("" ::: "memory");
        rx_head++;
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

/* Whether an end-of-input mark sits at the read position (and *seq names it). */
static int at_eof_mark(uint32_t *seq)
{
    uint32_t s, pos;
    do {
        s = eof_seq;
        __asm__ volatile("" ::: "memory");
        pos = eof_pos;
        __asm__ volatile("" ::: "memory");
    } while ((s & 1) || s != eof_seq);
    *seq = s;
    return s != 0 && s != eof_passed_seq && pos == rx_tail;
}

int serial_try_read_byte(void)
{
    if (!rx_irq)
        rx_drain();
    uint32_t seq;
    if (at_eof_mark(&seq)) {
        if (eof_reported_seq != seq) {
            eof_reported_seq = seq;
            return SERIAL_EOF;
        }
        if (rx_tail == rx_head)
            return SERIAL_EOF;              /* nothing after it: end of file stays */
        eof_passed_seq = seq;               /* input came after it: read on */
    }
    if (rx_tail == rx_head)
        return -1;
    int byte = rx_ring[rx_tail % RX_RING];
    __asm__ volatile("" ::: "memory");
    rx_tail++;
    if (rx_throttled && rx_head - rx_tail <= RX_RING / 2) {
        rx_throttled = 0;
        outb(SERIAL_COM1 + IER, IER_RX_AVAILABLE);
        irq_disable();                      /* not every UART model raises it for waiting input */
        rx_drain();
        irq_enable();
    }
    return byte;
}

int serial_read_byte(void)
{
    for (;;) {
        uint32_t seen = pyrite_irq_count;
        int byte = serial_try_read_byte();
        if (byte != -1)
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
    int first = serial_read_byte();
    if (first == SERIAL_EOF)
        return 0;
    buf[0] = (char)first;
    size_t got = 1;
    int byte;
    uint32_t seq;
    while (got < n && !at_eof_mark(&seq) && (byte = serial_try_read_byte()) >= 0)
        buf[got++] = (char)byte;
    return got;
}

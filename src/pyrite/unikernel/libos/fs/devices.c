/* Character devices: the console (fds 0, 1, 2, /dev/console, /dev/tty), /dev/null, /dev/zero. */
#include <stdio.h>
#include <string.h>
#include <pyrite/serial.h>
#include "vfs.h"

#define TCGETS_     0x5401
#define TCSETS_     0x5402
#define TCSETSW_    0x5403
#define TCSETSF_    0x5404
#define TIOCGWINSZ_ 0x5413
#define TIOCSWINSZ_ 0x5414

#define DEV(major, minor) (((uint64_t)(major) << 8) | (minor))
#define DEV_NULL    DEV(1, 3)
#define DEV_ZERO    DEV(1, 5)
#define DEV_TTY     DEV(5, 0)
#define DEV_CONSOLE DEV(5, 1)

/* struct termios as the kernel's TCGETS fills it: what a serial line in cooked mode shows. */
struct kernel_termios { uint32_t iflag, oflag, cflag, lflag; uint8_t line, cc[19]; };
struct kernel_winsize { uint16_t rows, cols, xpixel, ypixel; };

/* Flush stdout before waiting for input (prompts without "\n"), if the program has stdio. */
extern int fflush(FILE *) __attribute__((weak));

static long console_read(struct vnode *node, void *buf, size_t n, uint64_t offset)
{
    if (!n)
        return 0;
    if (fflush)
        fflush(stdout);
    if (!serial_rx_irq_enabled())
        serial_rx_irq_enable();
    return (long)serial_read(buf, n);
}

static long console_write(struct vnode *node, const void *buf, size_t n, uint64_t offset)
{
    serial_write(buf, n);
    return (long)n;
}

static long console_ioctl(struct vnode *node, unsigned long request, unsigned long arg)
{
    switch (request) {
    case TCGETS_: {
        struct kernel_termios t = {
            .iflag = 0x500,             /* ICRNL | IXON */
            .oflag = 0x5,               /* OPOST | ONLCR */
            .cflag = 0xbf,              /* B38400 | CS8 | CREAD */
            .lflag = 0x8a3b,            /* ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN */
            .cc = {3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22},
        };
        if (!arg)
            return -EFAULT;
        memcpy((void *)arg, &t, sizeof t);
        return 0;
    }
    case TCSETS_: case TCSETSW_: case TCSETSF_: case TIOCSWINSZ_:
        return arg ? 0 : -EFAULT;       /* accepted: the serial line has no settings to change */
    case TIOCGWINSZ_: {
        struct kernel_winsize w = {24, 80, 0, 0};
        if (!arg)
            return -EFAULT;
        memcpy((void *)arg, &w, sizeof w);
        return 0;
    }
    }
    return -ENOTTY;
}

static int console_update(struct vnode *node) { return 0; }    /* mode and times live in the vnode */

static const struct vnode_ops console_ops = {
    .read = console_read, .write = console_write, .ioctl = console_ioctl, .update = console_update,
};

static long null_read(struct vnode *node, void *buf, size_t n, uint64_t offset) { return 0; }
static long any_write(struct vnode *node, const void *buf, size_t n, uint64_t offset) { return (long)n; }
static long zero_read(struct vnode *node, void *buf, size_t n, uint64_t offset)
{
    memset(buf, 0, n);
    return (long)n;
}

static const struct vnode_ops null_ops = {.read = null_read, .write = any_write};
static const struct vnode_ops zero_ops = {.read = zero_read, .write = any_write};

static struct mount console_mount = {.source = "console", .dev = 6};
struct vnode fs_console = {
    .ops = &console_ops, .mnt = &console_mount, .ino = 1, .mode = S_IFCHR_ | 0620, .nlink = 1,
    .rdev = DEV_CONSOLE, .refs = 1 << 30,
};

const struct vnode_ops *device_ops(uint64_t rdev)
{
    switch (rdev) {
    case DEV_NULL: return &null_ops;
    case DEV_ZERO: return &zero_ops;
    case DEV_TTY: case DEV_CONSOLE: return &console_ops;
    }
    return NULL;
}

int devices_populate(struct vnode *dev_dir)
{
    static const struct { const char *name; uint64_t rdev; uint32_t mode; } nodes[] = {
        {"null", DEV_NULL, 0666}, {"zero", DEV_ZERO, 0666}, {"tty", DEV_TTY, 0666},
        {"console", DEV_CONSOLE, 0600},
    };
    for (unsigned i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        struct vnode *node;
        int err = dev_dir->ops->create(dev_dir, nodes[i].name, strlen(nodes[i].name),
                                       S_IFCHR_ | nodes[i].mode, NULL, &node);
        if (err)
            return err;
        node->rdev = nodes[i].rdev;
        vnode_put(node);
    }
    return 0;
}

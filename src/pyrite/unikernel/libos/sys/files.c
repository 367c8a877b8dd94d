/*
 * Console-only file system calls: WEAK versions of libos/fs/fs.h that the file systems'
 * strong ones replace at link time. File descriptors 0, 1 and 2 are the serial console
 * (reads wait for input; writes go out as they are, no "\n" -> "\r\n"); every path is
 * -ENOENT and every other descriptor -EBADF.
 *
 * Terminal: fds 1 and 2 answer TIOCGWINSZ (80x24), so that musl line-buffers stdout as on
 * a terminal (and isatty(1) is true); fd 0 does not (isatty(0) is false), because what the
 * host gives the VM as input is usually a file or a pipe: programs that read a script from
 * stdin when it is not a terminal (interpreters) then behave as they do on the host.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <pyrite/serial.h>
#include "../fs/fs.h"

#define WEAK __attribute__((weak))

static int console(int fd) { return fd >= 0 && fd <= 2; }

/* Flush stdout before waiting for input (prompts without "\n"), if the program has stdio. */
extern int fflush(FILE *) __attribute__((weak));

WEAK long fs_read(int fd, void *buf, size_t n)
{
    if (!console(fd))
        return -EBADF;
    if (!n)
        return 0;
    if (fflush)
        fflush(stdout);
    if (!serial_rx_irq_enabled())
        serial_rx_irq_enable();
    return (long)serial_read(buf, n);
}

WEAK long fs_write(int fd, const void *buf, size_t n)
{
    if (!console(fd))
        return -EBADF;
    serial_write(buf, n);
    return (long)n;
}

WEAK long fs_readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (!console(fd))
        return -EBADF;
    if (iovcnt < 0 || iovcnt > 1024)
        return -EINVAL;
    for (int i = 0; i < iovcnt; i++)            /* the first non-empty buffer: what is there */
        if (iov[i].iov_len)
            return fs_read(fd, iov[i].iov_base, iov[i].iov_len);
    return 0;
}

WEAK long fs_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (!console(fd))
        return -EBADF;
    if (iovcnt < 0 || iovcnt > 1024)
        return -EINVAL;
    long total = 0;
    for (int i = 0; i < iovcnt; i++) {
        serial_write(iov[i].iov_base, iov[i].iov_len);
        total += (long)iov[i].iov_len;
    }
    return total;
}

WEAK long fs_pread64(int fd, void *buf, size_t n, off_t offset) { return console(fd) ? -ESPIPE : -EBADF; }
WEAK long fs_pwrite64(int fd, const void *buf, size_t n, off_t offset) { return console(fd) ? -ESPIPE : -EBADF; }
WEAK long fs_preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset) { return console(fd) ? -ESPIPE : -EBADF; }
WEAK long fs_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) { return console(fd) ? -ESPIPE : -EBADF; }
WEAK long fs_lseek(int fd, off_t offset, int whence) { return console(fd) ? -ESPIPE : -EBADF; }

WEAK long fs_close(int fd) { return console(fd) ? 0 : -EBADF; }

WEAK long fs_fstat(int fd, struct stat *st)
{
    if (!console(fd))
        return -EBADF;
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFCHR | 0620;
    st->st_rdev = makedev(4, 64);               /* ttyS0 */
    st->st_nlink = 1;
    st->st_blksize = 1024;
    st->st_ino = (ino_t)(fd + 1);
    return 0;
}

WEAK long fs_newfstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    if (path && !*path && (flags & AT_EMPTY_PATH))
        return fs_fstat(dirfd, st);
    return -ENOENT;
}

WEAK long fs_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx)
{
    return (path && !*path && (flags & AT_EMPTY_PATH)) ? (console(dirfd) ? -ENOSYS : -EBADF) : -ENOENT;
}

WEAK long fs_fcntl(int fd, int cmd, unsigned long arg)
{
    if (!console(fd))
        return -EBADF;
    switch (cmd) {
    case F_GETFD: return 0;
    case F_SETFD: return 0;                     /* close-on-exec: there is no exec */
    case F_GETFL: return O_RDWR;
    }
    return -EINVAL;
}

WEAK long fs_ioctl(int fd, unsigned long request, unsigned long arg)
{
    if (!console(fd))
        return -EBADF;
    if (request == TIOCGWINSZ && fd != 0) {
        struct winsize *ws = (struct winsize *)arg;
        *ws = (struct winsize){.ws_row = 24, .ws_col = 80};
        return 0;
    }
    return -ENOTTY;
}

WEAK long fs_dup(int fd) { return console(fd) ? -EMFILE : -EBADF; }
WEAK long fs_dup2(int fd, int newfd) { return !console(fd) ? -EBADF : fd == newfd ? newfd : -EBADF; }
WEAK long fs_dup3(int fd, int newfd, int flags) { return !console(fd) ? -EBADF : fd == newfd ? -EINVAL : -EBADF; }

WEAK long fs_fsync(int fd) { return console(fd) ? -EINVAL : -EBADF; }
WEAK long fs_fdatasync(int fd) { return console(fd) ? -EINVAL : -EBADF; }
WEAK long fs_ftruncate(int fd, off_t length) { return console(fd) ? -EINVAL : -EBADF; }
WEAK long fs_getdents64(int fd, void *dirp, size_t count) { return console(fd) ? -ENOTDIR : -EBADF; }
WEAK long fs_fchdir(int fd) { return console(fd) ? -ENOTDIR : -EBADF; }
WEAK long fs_fchmod(int fd, int mode) { return console(fd) ? 0 : -EBADF; }
WEAK long fs_fstatfs(int fd, struct statfs *buf) { return console(fd) ? -ENOSYS : -EBADF; }
WEAK long fs_fallocate(int fd, int mode, off_t offset, off_t len) { return console(fd) ? -ENODEV : -EBADF; }

/* No file system: every path names nothing. */
WEAK long fs_open(const char *path, int flags, int mode) { return -ENOENT; }
WEAK long fs_openat(int dirfd, const char *path, int flags, int mode) { return -ENOENT; }
WEAK long fs_creat(const char *path, int mode) { return -ENOENT; }
WEAK long fs_stat(const char *path, struct stat *st) { return -ENOENT; }
WEAK long fs_lstat(const char *path, struct stat *st) { return -ENOENT; }
WEAK long fs_mkdir(const char *path, int mode) { return -ENOENT; }
WEAK long fs_mkdirat(int dirfd, const char *path, int mode) { return -ENOENT; }
WEAK long fs_rmdir(const char *path) { return -ENOENT; }
WEAK long fs_unlink(const char *path) { return -ENOENT; }
WEAK long fs_unlinkat(int dirfd, const char *path, int flags) { return -ENOENT; }
WEAK long fs_rename(const char *from, const char *to) { return -ENOENT; }
WEAK long fs_renameat(int olddirfd, const char *from, int newdirfd, const char *to) { return -ENOENT; }
WEAK long fs_renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned flags) { return -ENOENT; }
WEAK long fs_link(const char *from, const char *to) { return -ENOENT; }
WEAK long fs_linkat(int olddirfd, const char *from, int newdirfd, const char *to, int flags) { return -ENOENT; }
WEAK long fs_symlink(const char *target, const char *path) { return -ENOENT; }
WEAK long fs_symlinkat(const char *target, int dirfd, const char *path) { return -ENOENT; }
WEAK long fs_readlink(const char *path, char *buf, size_t size) { return -ENOENT; }
WEAK long fs_readlinkat(int dirfd, const char *path, char *buf, size_t size) { return -ENOENT; }
WEAK long fs_truncate(const char *path, off_t length) { return -ENOENT; }
WEAK long fs_access(const char *path, int mode) { return -ENOENT; }
WEAK long fs_faccessat(int dirfd, const char *path, int mode) { return -ENOENT; }
WEAK long fs_faccessat2(int dirfd, const char *path, int mode, int flags) { return -ENOENT; }
WEAK long fs_chdir(const char *path) { return -ENOENT; }
WEAK long fs_chmod(const char *path, int mode) { return -ENOENT; }
WEAK long fs_fchmodat(int dirfd, const char *path, int mode) { return -ENOENT; }
WEAK long fs_utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) { return -ENOENT; }
WEAK long fs_statfs(const char *path, struct statfs *buf) { return -ENOENT; }

WEAK long fs_getcwd(char *buf, size_t size)
{
    if (size < 2)
        return -ERANGE;
    buf[0] = '/';
    buf[1] = 0;
    return 2;
}

static int file_mask;
WEAK long fs_umask(int mask)
{
    int old = file_mask;
    file_mask = mask & 0777;
    return old;
}

WEAK long fs_flock(int fd, int operation) { return console(fd) ? 0 : -EBADF; }
WEAK long fs_fchown(int fd, unsigned uid, unsigned gid) { return console(fd) ? 0 : -EBADF; }
WEAK long fs_fchownat(int dirfd, const char *path, unsigned uid, unsigned gid, int flags) { return -ENOENT; }
WEAK long fs_chown(const char *path, unsigned uid, unsigned gid) { return -ENOENT; }
WEAK long fs_lchown(const char *path, unsigned uid, unsigned gid) { return -ENOENT; }
WEAK long fs_mmap_private(int fd, void *buf, size_t len, off_t offset) { return console(fd) ? -ENODEV : -EBADF; }
WEAK long fs_fadvise64(int fd, off_t offset, off_t len, int advice) { return console(fd) ? -ESPIPE : -EBADF; }
WEAK long fs_sync(void) { return 0; }
WEAK long fs_syncfs(int fd) { return console(fd) ? 0 : -EBADF; }

WEAK long fs_pipe(int fds[2]) { return -EMFILE; }
WEAK long fs_pipe2(int fds[2], int flags) { return -EMFILE; }

/* Console output is always ready; waiting for console input this way is not supported. */
WEAK long fs_poll(struct pollfd *fds, unsigned long nfds, int timeout_ms)
{
    long ready = 0;
    for (unsigned long i = 0; i < nfds; i++) {
        fds[i].revents = 0;
        if (fds[i].fd < 0)
            continue;
        if (!console(fds[i].fd))
            fds[i].revents = POLLNVAL;
        else if (fds[i].fd == 0 && (fds[i].events & POLLIN))
            return -ENOSYS;
        else
            fds[i].revents = (short)(fds[i].events & POLLOUT);
        ready += fds[i].revents != 0;
    }
    return ready;
}

WEAK long fs_ppoll(struct pollfd *fds, unsigned long nfds, const struct timespec *timeout, const void *sigmask, size_t sigsetsize)
{
    return fs_poll(fds, nfds, 0);
}

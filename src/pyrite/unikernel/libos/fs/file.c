/* Descriptors: the fd table (0, 1, 2 are the console) and the calls that take an fd. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include "vfs.h"

#define FS_MAX_FDS 1024

#define F_DUPFD_ 0
#define F_GETFD_ 1
#define F_SETFD_ 2
#define F_GETFL_ 3
#define F_SETFL_ 4
#define F_GETLK_ 5
#define F_SETLK_ 6
#define F_SETLKW_ 7
#define F_DUPFD_CLOEXEC_ 1030
#define FD_CLOEXEC_ 1
#define F_UNLCK_ 2
#define FIONCLEX_ 0x5450
#define FIOCLEX_ 0x5451
#define SEEK_SET_ 0
#define SEEK_CUR_ 1
#define SEEK_END_ 2
#define SEEK_DATA_ 3
#define SEEK_HOLE_ 4
#define ENXIO_ 6
#define EOPNOTSUPP_ 95

/* An open file description: what open() made, shared by dup()'s copies. */
struct file {
    struct vnode *node;
    const struct vnode_ops *io;         /* the node's operations, or its device's */
    uint64_t pos;
    int flags;
    int refs;
    int written;                        /* written through: flush the drive at the last close */
};

static struct file console_files[3] = {
    {&fs_console, NULL, 0, LX_O_RDWR, 1, 0},
    {&fs_console, NULL, 0, LX_O_RDWR, 1, 0},
    {&fs_console, NULL, 0, LX_O_RDWR, 1, 0},
};
static struct fd_slot { struct file *file; int cloexec; } fds[FS_MAX_FDS];    /* bss: not in the image */
static int fds_ready;
static struct vnode *cwd;

static void fds_init(void)
{
    if (fds_ready)
        return;
    fds_ready = 1;
    for (int fd = 0; fd < 3; fd++)
        fds[fd].file = &console_files[fd];
}

static struct file *fd_file(int fd)
{
    fds_init();
    if (fd < 0 || fd >= FS_MAX_FDS || !fds[fd].file)
        return NULL;
    struct file *f = fds[fd].file;
    if (!f->io)
        f->io = f->node->ops;           /* the console's static descriptions */
    return f;
}

struct vnode *fd_vnode(int fd)
{
    struct file *f = fd_file(fd);
    return f ? f->node : NULL;
}

struct vnode *fs_cwd(void)
{
    if (!cwd) {
        cwd = vfs_root();
        vnode_get(cwd);
    }
    return cwd;
}

void fs_set_cwd(struct vnode *node)
{
    vnode_get(node);
    vnode_put(cwd);
    cwd = node;
}

static int lowest_free_fd(int from)
{
    fds_init();
    for (int fd = from; fd < FS_MAX_FDS; fd++)
        if (!fds[fd].file)
            return fd;
    return -EMFILE;
}

long fd_install(struct vnode *node, int flags)
{
    const struct vnode_ops *io = node->ops;
    if ((node->mode & S_IFMT_) == S_IFCHR_) {
        io = device_ops(node->rdev);
        if (!io) {
            vnode_put(node);
            return -ENXIO_;
        }
    }
    int fd = lowest_free_fd(0);
    struct file *f = fd < 0 ? NULL : calloc(1, sizeof *f);
    if (!f) {
        vnode_put(node);
        return fd < 0 ? fd : -ENOMEM;
    }
    *f = (struct file){node, io, 0, flags & ~(LX_O_CREAT | LX_O_EXCL | LX_O_TRUNC | LX_O_CLOEXEC), 1, 0};
    fds[fd] = (struct fd_slot){f, (flags & LX_O_CLOEXEC) != 0};
    return fd;
}

static int readable(struct file *f) { return (f->flags & LX_O_ACCMODE) != LX_O_WRONLY && !(f->flags & LX_O_PATH); }
static int writable(struct file *f) { return (f->flags & LX_O_ACCMODE) != LX_O_RDONLY && !(f->flags & LX_O_PATH); }

static int seekable(struct vnode *node) { return IS_REG(node->mode) || IS_DIR(node->mode); }

static long do_read(struct file *f, void *buf, size_t n, uint64_t offset)
{
    if (!readable(f))
        return -EBADF;
    if (IS_DIR(f->node->mode))
        return -EISDIR;
    if (!f->io->read)
        return -EINVAL;
    if (n && !buf)
        return -EFAULT;
    return f->io->read(f->node, buf, n, offset);
}

static long do_write(struct file *f, const void *buf, size_t n, uint64_t offset)
{
    if (!writable(f))
        return -EBADF;
    if (!f->io->write)
        return -EINVAL;
    if (n && !buf)
        return -EFAULT;
    if (n && IS_REG(f->node->mode))
        vfs_touch(f->node, FS_TOUCH_M | FS_TOUCH_C);
    long r = f->io->write(f->node, buf, n, offset);
    if (r > 0)
        f->written = 1;
    return r;
}

long fs_read(int fd, void *buf, size_t n)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    long r = do_read(f, buf, n, f->pos);
    if (r > 0 && seekable(f->node))
        f->pos += (uint64_t)r;
    return r;
}

long fs_write(int fd, const void *buf, size_t n)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if ((f->flags & LX_O_APPEND) && IS_REG(f->node->mode))
        f->pos = f->node->size;
    long r = do_write(f, buf, n, f->pos);
    if (r > 0 && seekable(f->node))
        f->pos += (uint64_t)r;
    return r;
}

/* One transfer per iovec, at the file position or (`at`) from `offset`, until one is short. */
static long vectored(int fd, const struct iovec *iov, int count, int write, int at, off_t offset)
{
    if (count < 0 || count > 1024)
        return -EINVAL;
    long total = 0;
    for (int i = 0; i < count; i++) {
        if (!iov[i].iov_len)
            continue;
        void *base = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        long r = at ? (write ? fs_pwrite64(fd, base, len, offset + total) : fs_pread64(fd, base, len, offset + total))
                    : (write ? fs_write(fd, base, len) : fs_read(fd, base, len));
        if (r < 0)
            return total ? total : r;
        total += r;
        if ((size_t)r < len)
            break;
    }
    return total;
}

long fs_readv(int fd, const struct iovec *iov, int count) { return vectored(fd, iov, count, 0, 0, 0); }
long fs_writev(int fd, const struct iovec *iov, int count) { return vectored(fd, iov, count, 1, 0, 0); }
long fs_preadv(int fd, const struct iovec *iov, int count, off_t offset) { return vectored(fd, iov, count, 0, 1, offset); }
long fs_pwritev(int fd, const struct iovec *iov, int count, off_t offset) { return vectored(fd, iov, count, 1, 1, offset); }

/* The open file of `fd` for a transfer at `offset` (pread64, pwrite64), or a negative errno. */
static long positioned(int fd, off_t offset, struct file **out)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!seekable(f->node))
        return -ESPIPE;
    if (offset < 0)
        return -EINVAL;
    *out = f;
    return 0;
}

long fs_pread64(int fd, void *buf, size_t n, off_t offset)
{
    struct file *f;
    long err = positioned(fd, offset, &f);
    return err ? err : do_read(f, buf, n, (uint64_t)offset);
}

long fs_pwrite64(int fd, const void *buf, size_t n, off_t offset)
{
    struct file *f;
    long err = positioned(fd, offset, &f);
    return err ? err : do_write(f, buf, n, (uint64_t)offset);
}

static void file_put(struct file *f)
{
    if (--f->refs)
        return;
    /* What was written leaves the guest at close (a crash later loses nothing the VMM has);
     * fsync also flushes the drive's cache. */
    if (f->written && f->node->mnt->writeback)
        f->node->mnt->writeback(f->node->mnt);
    if (f >= console_files && f < console_files + 3)
        return;
    vnode_put(f->node);
    free(f);
}

void fd_close_all(void)
{
    for (int fd = 3; fd < FS_MAX_FDS; fd++)
        if (fds[fd].file)
            fs_close(fd);
}

long fs_close(int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    fds[fd].file = NULL;
    file_put(f);
    return 0;
}

long fs_lseek(int fd, off_t offset, int whence)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!seekable(f->node))
        return -ESPIPE;
    if (IS_DIR(f->node->mode)) {        /* offsets are readdir cookies (d_off) */
        if (whence == SEEK_CUR_ && offset == 0)
            return (long)f->pos;
        if (whence != SEEK_SET_ || offset < 0)
            return -EINVAL;
        f->pos = (uint64_t)offset;
        return offset;
    }
    int64_t base, size = (int64_t)f->node->size;
    switch (whence) {
    case SEEK_SET_: base = 0; break;
    case SEEK_CUR_: base = (int64_t)f->pos; break;
    case SEEK_END_: base = size; break;
    case SEEK_DATA_:
    case SEEK_HOLE_:
        if (offset < 0 || offset >= size)
            return -ENXIO_;
        f->pos = whence == SEEK_DATA_ ? (uint64_t)offset : (uint64_t)size;
        return (long)f->pos;
    default: return -EINVAL;
    }
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0)
        return offset > 0 ? -EOVERFLOW : -EINVAL;
    f->pos = (uint64_t)(base + offset);
    return (long)f->pos;
}

long fs_fstat(int fd, struct stat *st)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    vfs_fill_stat(f->node, st);
    return 0;
}

long fs_getdents64(int fd, void *buf, size_t n)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!IS_DIR(f->node->mode))
        return -ENOTDIR;
    struct dir_entry *ent = malloc(sizeof *ent);
    if (!ent)
        return -ENOMEM;
    size_t used = 0;
    long err = 0;
    for (;;) {
        uint64_t cookie = f->pos;
        int found = f->node->ops->readdir(f->node, &cookie, ent);
        if (found <= 0) {
            err = found;
            break;
        }
        size_t reclen = (offsetof(struct fs_dirent64, d_name) + ent->name_len + 1 + 7) & ~(size_t)7;
        if (used + reclen > n) {
            if (!used)
                err = -EINVAL;
            break;
        }
        struct fs_dirent64 *d = (struct fs_dirent64 *)((char *)buf + used);
        d->d_ino = ent->ino;
        d->d_off = (int64_t)cookie;
        d->d_reclen = (uint16_t)reclen;
        d->d_type = ent->type;
        memcpy(d->d_name, ent->name, ent->name_len);
        memset(d->d_name + ent->name_len, 0, reclen - offsetof(struct fs_dirent64, d_name) - ent->name_len);
        used += reclen;
        f->pos = cookie;
    }
    free(ent);
    return used ? (long)used : err;
}

long fs_ftruncate(int fd, off_t length)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (length < 0 || !writable(f) || !IS_REG(f->node->mode))
        return -EINVAL;
    int err = f->node->ops->truncate(f->node, (uint64_t)length);
    if (!err) {
        vfs_touch(f->node, FS_TOUCH_M | FS_TOUCH_C);
        f->node->ops->update(f->node);
        f->written = 1;
    }
    return err;
}

long fs_fsync(int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if ((f->node->mode & S_IFMT_) == S_IFCHR_)
        return -EINVAL;                 /* as Linux answers for a terminal */
    f->written = 0;
    return f->node->ops->fsync ? f->node->ops->fsync(f->node) : 0;
}

long fs_fdatasync(int fd) { return fs_fsync(fd); }

static long dup_to(struct file *f, int newfd, int cloexec)
{
    if (fds[newfd].file) {
        struct file *old = fds[newfd].file;
        fds[newfd].file = NULL;
        file_put(old);
    }
    f->refs++;
    fds[newfd] = (struct fd_slot){f, cloexec};
    return newfd;
}

long fs_fcntl(int fd, int cmd, unsigned long arg)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    switch (cmd) {
    case F_DUPFD_:
    case F_DUPFD_CLOEXEC_: {
        if (arg >= FS_MAX_FDS)
            return -EINVAL;
        int newfd = lowest_free_fd((int)arg);
        return newfd < 0 ? newfd : dup_to(f, newfd, cmd == F_DUPFD_CLOEXEC_);
    }
    case F_GETFD_: return fds[fd].cloexec ? FD_CLOEXEC_ : 0;
    case F_SETFD_: fds[fd].cloexec = (arg & FD_CLOEXEC_) != 0; return 0;
    case F_GETFL_: return f->flags;
    case F_SETFL_: {
        int settable = LX_O_APPEND | LX_O_NONBLOCK;
        f->flags = (f->flags & ~settable) | ((int)arg & settable);
        return 0;
    }
    case F_GETLK_: {                    /* one process: no lock of another can be in the way */
        short *type = (short *)arg;
        if (!type)
            return -EFAULT;
        *type = F_UNLCK_;
        return 0;
    }
    case F_SETLK_:
    case F_SETLKW_:
        return arg ? 0 : -EFAULT;       /* a process's own locks never conflict */
    }
    return -EINVAL;
}

long fs_ioctl(int fd, unsigned long request, unsigned long arg)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (request == FIOCLEX_ || request == FIONCLEX_) {
        fds[fd].cloexec = request == FIOCLEX_;
        return 0;
    }
    if (f == &console_files[0])
        return -ENOTTY;                 /* stdin is usually a file or pipe on the host: not a tty */
    return f->io->ioctl ? f->io->ioctl(f->node, request, arg) : -ENOTTY;
}

long fs_dup(int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    int newfd = lowest_free_fd(0);
    return newfd < 0 ? newfd : dup_to(f, newfd, 0);
}

long fs_dup3(int oldfd, int newfd, int flags)
{
    struct file *f = fd_file(oldfd);
    if (!f || newfd < 0 || newfd >= FS_MAX_FDS)
        return -EBADF;
    if (oldfd == newfd || (flags & ~LX_O_CLOEXEC))
        return -EINVAL;
    return dup_to(f, newfd, (flags & LX_O_CLOEXEC) != 0);
}

long fs_dup2(int oldfd, int newfd)
{
    if (oldfd == newfd)
        return fd_file(oldfd) ? newfd : -EBADF;
    return fs_dup3(oldfd, newfd, 0);
}

long fs_fchdir(int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!IS_DIR(f->node->mode))
        return -ENOTDIR;
    fs_set_cwd(f->node);
    return 0;
}

long fs_fchmod(int fd, int mode)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    int err = vfs_check_writable(f->node->mnt);
    if (err)
        return err;
    f->node->mode = (f->node->mode & S_IFMT_) | ((unsigned)mode & 07777);
    vfs_touch(f->node, FS_TOUCH_C);
    return f->node->ops->update(f->node);
}

long fs_fchown(int fd, unsigned uid, unsigned gid)
{
    struct file *f = fd_file(fd);
    return f ? vfs_chown(f->node, uid, gid) : -EBADF;
}

long fs_mmap_private(int fd, void *buf, size_t len, off_t offset)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!IS_REG(f->node->mode))
        return -ENODEV;
    if (!readable(f))
        return -EACCES;
    for (size_t done = 0; done < len;) {   /* past the end of the file the pages stay zero */
        long n = f->io->read(f->node, (char *)buf + done, len - done, (uint64_t)offset + done);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return 0;
}

long fs_fadvise64(int fd, off_t offset, off_t len, int advice)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (!seekable(f->node))
        return -ESPIPE;
    return (advice < 0 || advice > 5 || len < 0) ? -EINVAL : 0;     /* advice only: nothing to do */
}

long fs_flock(int fd, int operation)
{
    /* One process: flock() locks never conflict, so every valid request is granted. */
    if (!fd_file(fd))
        return -EBADF;
    int op = operation & ~4;            /* LOCK_NB */
    return (op == 1 || op == 2 || op == 8) ? 0 : -EINVAL;
}

long fs_syncfs(int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    return f->node->mnt->sync ? f->node->mnt->sync(f->node->mnt) : 0;
}

long fs_fstatfs(int fd, struct statfs *buf)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    vfs_fill_statfs(f->node, buf);
    return 0;
}

long fs_fallocate(int fd, int mode, off_t offset, off_t len)
{
    struct file *f = fd_file(fd);
    if (!f)
        return -EBADF;
    if (offset < 0 || len <= 0)
        return -EINVAL;
    if (!writable(f))
        return -EBADF;
    return IS_REG(f->node->mode) ? -EOPNOTSUPP_ : -ENODEV;   /* as ext2 on Linux answers */
}

/* Files and directories are always ready; console input cannot be waited for this way. */
long fs_poll(struct pollfd *polls, unsigned long nfds, int timeout_ms)
{
    long ready = 0;
    for (unsigned long i = 0; i < nfds; i++) {
        struct file *f = polls[i].fd < 0 ? NULL : fd_file(polls[i].fd);
        polls[i].revents = 0;
        if (polls[i].fd < 0)
            continue;
        if (!f)
            polls[i].revents = POLLNVAL;
        else if (f->node == &fs_console && (polls[i].events & POLLIN))
            return -ENOSYS;
        else
            polls[i].revents = (short)(polls[i].events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM));
        ready += polls[i].revents != 0;
    }
    return ready;
}

long fs_ppoll(struct pollfd *polls, unsigned long nfds, const struct timespec *timeout, const void *sigmask,
              size_t sigsetsize)
{
    return fs_poll(polls, nfds, 0);
}

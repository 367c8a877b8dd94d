/* fsh.c built natively against the library OS's file system: POSIX calls -> fs_* (errno set
 * from the -errno results), directory streams over fs_getdents64. Included after the
 * system headers, so glibc's declarations stay as they are. */
#ifndef FSH_NATIVE_SHIM_H
#define FSH_NATIVE_SHIM_H

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "vfs.h"

static long shim_result(long r)
{
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static int shim_open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    unsigned mode = (flags & O_CREAT) ? va_arg(ap, unsigned) : 0;
    va_end(ap);
    return (int)shim_result(fs_open(path, flags, mode));
}

static int shim_close(int fd) { return (int)shim_result(fs_close(fd)); }
static long shim_read(int fd, void *b, size_t n) { return shim_result(fs_read(fd, b, n)); }
static long shim_write(int fd, const void *b, size_t n) { return shim_result(fs_write(fd, b, n)); }
static long shim_pread(int fd, void *b, size_t n, long o) { return shim_result(fs_pread64(fd, b, n, o)); }
static long shim_pwrite(int fd, const void *b, size_t n, long o) { return shim_result(fs_pwrite64(fd, b, n, o)); }
static long shim_lseek(int fd, long o, int w) { return shim_result(fs_lseek(fd, o, w)); }
static int shim_stat(const char *p, struct stat *s) { return (int)shim_result(fs_stat(p, s)); }
static int shim_lstat(const char *p, struct stat *s) { return (int)shim_result(fs_lstat(p, s)); }
static int shim_mkdir(const char *p, unsigned m) { return (int)shim_result(fs_mkdir(p, m)); }
static int shim_rmdir(const char *p) { return (int)shim_result(fs_rmdir(p)); }
static int shim_unlink(const char *p) { return (int)shim_result(fs_unlink(p)); }
static int shim_rename(const char *a, const char *b) { return (int)shim_result(fs_rename(a, b)); }
static int shim_link(const char *a, const char *b) { return (int)shim_result(fs_link(a, b)); }
static int shim_symlink(const char *a, const char *b) { return (int)shim_result(fs_symlink(a, b)); }
static long shim_readlink(const char *p, char *b, size_t n) { return shim_result(fs_readlink(p, b, n)); }
static int shim_truncate(const char *p, long n) { return (int)shim_result(fs_truncate(p, n)); }
static int shim_chdir(const char *p) { return (int)shim_result(fs_chdir(p)); }
static char *shim_getcwd(char *b, size_t n) { return shim_result(fs_getcwd(b, n)) < 0 ? NULL : b; }
static int shim_fsync(int fd) { return (int)shim_result(fs_fsync(fd)); }
static void shim_sync(void) { fs_sync(); }
static int shim_chmod(const char *p, unsigned m) { return (int)shim_result(fs_chmod(p, m)); }
static int shim_chown(const char *p, unsigned u, unsigned g) { return (int)shim_result(fs_chown(p, u, g)); }
static int shim_fstat(int fd, struct stat *s) { return (int)shim_result(fs_fstat(fd, s)); }
static int shim_access(const char *p, int m) { return (int)shim_result(fs_access(p, m)); }
static int shim_dup(int fd) { return (int)shim_result(fs_dup(fd)); }
static int shim_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = cmd == F_GETFL || cmd == F_GETFD ? 0 : va_arg(ap, unsigned long);
    va_end(ap);
    return (int)shim_result(fs_fcntl(fd, cmd, arg));
}

/* A MAP_PRIVATE file mapping as sys/memory.c makes one: zeroed pages filled by fs_mmap_private. */
static void *shim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
    void *m = mmap(addr, len, prot | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long r = m == MAP_FAILED ? 0 : fs_mmap_private(fd, m, len, offset);
    if (r < 0) {
        munmap(m, len);
        errno = (int)-r;
        return MAP_FAILED;
    }
    return m;
}

#define open shim_open
#define mmap(a, l, p, f, fd, o) shim_mmap(a, l, p, f, fd, o)
#define close(fd) shim_close(fd)
#define read(fd, b, n) shim_read(fd, b, n)
#define write(fd, b, n) shim_write(fd, b, n)
#define pread(fd, b, n, o) shim_pread(fd, b, n, o)
#define pwrite(fd, b, n, o) shim_pwrite(fd, b, n, o)
#define lseek(fd, o, w) shim_lseek(fd, o, w)
#define stat(p, s) shim_stat(p, s)
#define lstat(p, s) shim_lstat(p, s)
#define mkdir(p, m) shim_mkdir(p, m)
#define rmdir(p) shim_rmdir(p)
#define unlink(p) shim_unlink(p)
#define rename(a, b) shim_rename(a, b)
#define link(a, b) shim_link(a, b)
#define symlink(a, b) shim_symlink(a, b)
#define readlink(p, b, n) shim_readlink(p, b, n)
#define truncate(p, n) shim_truncate(p, n)
#define chdir(p) shim_chdir(p)
#define getcwd(b, n) shim_getcwd(b, n)
#define fsync(fd) shim_fsync(fd)
#define sync() shim_sync()
#define chmod(p, m) shim_chmod(p, m)
#define access(p, m) shim_access(p, m)
#define chown(p, u, g) shim_chown(p, u, g)
#define fstat(fd, s) shim_fstat(fd, s)
#define dup(fd) shim_dup(fd)
#define fcntl shim_fcntl

typedef struct shim_dir {
    int fd;
    size_t at, len;
    char buf[2048];
    struct dirent ent;
} shim_DIR;

static shim_DIR *shim_opendir(const char *path)
{
    int fd = shim_open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return NULL;
    shim_DIR *d = calloc(1, sizeof *d);
    d->fd = fd;
    return d;
}

static struct dirent *shim_readdir(shim_DIR *d)
{
    if (d->at >= d->len) {
        long n = shim_result(fs_getdents64(d->fd, d->buf, sizeof d->buf));
        if (n <= 0)
            return NULL;
        d->at = 0;
        d->len = (size_t)n;
    }
    struct fs_dirent64 *e = (struct fs_dirent64 *)(d->buf + d->at);
    d->at += e->d_reclen;
    d->ent.d_ino = e->d_ino;
    d->ent.d_type = e->d_type;
    snprintf(d->ent.d_name, sizeof d->ent.d_name, "%s", e->d_name);
    return &d->ent;
}

static int shim_closedir(shim_DIR *d)
{
    fs_close(d->fd);
    free(d);
    return 0;
}

#define DIR shim_DIR
#define opendir(p) shim_opendir(p)
#define readdir(d) shim_readdir(d)
#define closedir(d) shim_closedir(d)

#endif

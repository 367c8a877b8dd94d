/*
 * File system calls of the library OS: one function per Linux system call, with the
 * system call's own arguments, returning its result or -errno (as the kernel does).
 * The system call dispatcher (libos/sys/) sends every file call here.
 *
 * Structures are the x86-64 kernel ABI's (what musl's headers describe): struct stat,
 * struct statx, struct linux_dirent64, struct iovec, struct timespec, struct winsize.
 */
#ifndef PYRITE_FS_H
#define PYRITE_FS_H

#include <stddef.h>
#include <stdint.h>

struct fs_timespec { int64_t tv_sec; long tv_nsec; };
struct fs_iovec { void *base; size_t len; };

struct fs_stat {                        /* x86-64 struct stat, 144 bytes */
    uint64_t st_dev, st_ino, st_nlink;
    uint32_t st_mode, st_uid, st_gid, pad0;
    uint64_t st_rdev;
    int64_t st_size, st_blksize, st_blocks;
    struct fs_timespec st_atim, st_mtim, st_ctim;
    int64_t unused[3];
};

struct fs_statx_timestamp { int64_t tv_sec; uint32_t tv_nsec; int32_t reserved; };
struct fs_statx {                       /* struct statx, 256 bytes */
    uint32_t stx_mask, stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink, stx_uid, stx_gid;
    uint16_t stx_mode, spare0;
    uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
    struct fs_statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
    uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
    uint64_t spare2[14];
};

struct fs_dirent64 {                    /* struct linux_dirent64 */
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
    char d_name[];
};

long fs_read(int fd, void *buf, size_t n);
long fs_write(int fd, const void *buf, size_t n);
long fs_readv(int fd, const struct fs_iovec *iov, int count);
long fs_writev(int fd, const struct fs_iovec *iov, int count);
long fs_pread64(int fd, void *buf, size_t n, long offset);
long fs_pwrite64(int fd, const void *buf, size_t n, long offset);
long fs_openat(int dirfd, const char *path, int flags, unsigned mode);
long fs_open(const char *path, int flags, unsigned mode);
long fs_close(int fd);
long fs_lseek(int fd, long offset, int whence);
long fs_fstat(int fd, struct fs_stat *st);
long fs_newfstatat(int dirfd, const char *path, struct fs_stat *st, int flags);
long fs_stat(const char *path, struct fs_stat *st);
long fs_lstat(const char *path, struct fs_stat *st);
long fs_statx(int dirfd, const char *path, int flags, unsigned mask, struct fs_statx *stx);
long fs_getdents64(int fd, void *buf, size_t n);
long fs_mkdirat(int dirfd, const char *path, unsigned mode);
long fs_mkdir(const char *path, unsigned mode);
long fs_unlinkat(int dirfd, const char *path, int flags);
long fs_unlink(const char *path);
long fs_rmdir(const char *path);
long fs_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
long fs_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
long fs_rename(const char *oldpath, const char *newpath);
long fs_linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags);
long fs_link(const char *oldpath, const char *newpath);
long fs_symlinkat(const char *target, int dirfd, const char *path);
long fs_symlink(const char *target, const char *path);
long fs_readlinkat(int dirfd, const char *path, char *buf, size_t size);
long fs_readlink(const char *path, char *buf, size_t size);
long fs_ftruncate(int fd, long length);
long fs_truncate(const char *path, long length);
long fs_fsync(int fd);
long fs_fdatasync(int fd);
long fs_sync(void);
long fs_fcntl(int fd, int cmd, unsigned long arg);
long fs_ioctl(int fd, unsigned long request, unsigned long arg);
long fs_dup(int fd);
long fs_dup2(int oldfd, int newfd);
long fs_dup3(int oldfd, int newfd, int flags);
long fs_faccessat(int dirfd, const char *path, int mode);
long fs_access(const char *path, int mode);
long fs_getcwd(char *buf, size_t size);
long fs_chdir(const char *path);
long fs_fchdir(int fd);
long fs_umask(unsigned mask);
long fs_utimensat(int dirfd, const char *path, const struct fs_timespec times[2], int flags);
long fs_fchmod(int fd, unsigned mode);
long fs_fchmodat(int dirfd, const char *path, unsigned mode);
long fs_chmod(const char *path, unsigned mode);
long fs_flock(int fd, int operation);

/* Write every dirty block to the drives and ask them to flush (called at exit). */
void fs_sync_all(void);

#endif

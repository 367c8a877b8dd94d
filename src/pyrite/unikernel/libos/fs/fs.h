/*
 * File system calls of the library OS: one function per Linux x86-64 system call, named
 * fs_<syscall name>, with the system call's own arguments, returning its result or -errno.
 * libos/sys/syscall.c dispatches to them. libos/sys/files.c has weak console-only versions
 * (fds 0, 1 and 2 on the serial console; every path -ENOENT, every other fd -EBADF); the
 * file systems' strong versions replace them at link time.
 */
#ifndef PYRITE_FS_H
#define PYRITE_FS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>

struct statx;
struct statfs;
struct pollfd;

long fs_read(int fd, void *buf, size_t n);
long fs_write(int fd, const void *buf, size_t n);
long fs_readv(int fd, const struct iovec *iov, int iovcnt);
long fs_writev(int fd, const struct iovec *iov, int iovcnt);
long fs_pread64(int fd, void *buf, size_t n, off_t offset);
long fs_pwrite64(int fd, const void *buf, size_t n, off_t offset);
long fs_preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset);
long fs_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset);
long fs_open(const char *path, int flags, int mode);
long fs_openat(int dirfd, const char *path, int flags, int mode);
long fs_creat(const char *path, int mode);
long fs_close(int fd);
long fs_lseek(int fd, off_t offset, int whence);
long fs_fstat(int fd, struct stat *st);
long fs_stat(const char *path, struct stat *st);
long fs_lstat(const char *path, struct stat *st);
long fs_newfstatat(int dirfd, const char *path, struct stat *st, int flags);
long fs_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx);
long fs_getdents64(int fd, void *dirp, size_t count);
long fs_mkdir(const char *path, int mode);
long fs_mkdirat(int dirfd, const char *path, int mode);
long fs_rmdir(const char *path);
long fs_unlink(const char *path);
long fs_unlinkat(int dirfd, const char *path, int flags);
long fs_rename(const char *from, const char *to);
long fs_renameat(int olddirfd, const char *from, int newdirfd, const char *to);
long fs_renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned flags);
long fs_link(const char *from, const char *to);
long fs_linkat(int olddirfd, const char *from, int newdirfd, const char *to, int flags);
long fs_symlink(const char *target, const char *path);
long fs_symlinkat(const char *target, int dirfd, const char *path);
long fs_readlink(const char *path, char *buf, size_t size);
long fs_readlinkat(int dirfd, const char *path, char *buf, size_t size);
long fs_truncate(const char *path, off_t length);
long fs_ftruncate(int fd, off_t length);
long fs_fsync(int fd);
long fs_fdatasync(int fd);
long fs_fcntl(int fd, int cmd, unsigned long arg);
long fs_ioctl(int fd, unsigned long request, unsigned long arg);
long fs_dup(int fd);
long fs_dup2(int fd, int newfd);
long fs_dup3(int fd, int newfd, int flags);
long fs_access(const char *path, int mode);
long fs_faccessat(int dirfd, const char *path, int mode);
long fs_faccessat2(int dirfd, const char *path, int mode, int flags);
long fs_getcwd(char *buf, size_t size);
long fs_chdir(const char *path);
long fs_fchdir(int fd);
long fs_umask(int mask);
long fs_chmod(const char *path, int mode);
long fs_fchmod(int fd, int mode);
long fs_fchmodat(int dirfd, const char *path, int mode);
long fs_utimensat(int dirfd, const char *path, const struct timespec times[2], int flags);
long fs_statfs(const char *path, struct statfs *buf);
long fs_fstatfs(int fd, struct statfs *buf);
long fs_pipe(int fds[2]);
long fs_pipe2(int fds[2], int flags);
long fs_fallocate(int fd, int mode, off_t offset, off_t len);
long fs_poll(struct pollfd *fds, unsigned long nfds, int timeout_ms);
long fs_ppoll(struct pollfd *fds, unsigned long nfds, const struct timespec *timeout, const void *sigmask, size_t sigsetsize);
long fs_flock(int fd, int operation);
long fs_fchown(int fd, unsigned uid, unsigned gid);
long fs_fchownat(int dirfd, const char *path, unsigned uid, unsigned gid, int flags);
long fs_chown(const char *path, unsigned uid, unsigned gid);
long fs_lchown(const char *path, unsigned uid, unsigned gid);
long fs_fadvise64(int fd, off_t offset, off_t len, int advice);
/* Fill `buf` (zeroed) with up to `len` bytes of the file `fd` from `offset`, for a MAP_PRIVATE
 * mapping (sys/memory.c): 0, or -EBADF, -EACCES (not open for reading), -ENODEV (not a file). */
long fs_mmap_private(int fd, void *buf, size_t len, off_t offset);
long fs_sync(void);
long fs_syncfs(int fd);

/* Write every file system's cache back to its drive and flush the drive, leaving it marked
 * clean (libos/fs runs it before the VM ends). */
void fs_sync_all(void);

#endif

/*
 * Inside the file system layer: vnodes (a file, directory, symlink or device of some
 * mounted file system), their operations, mounts, and the Linux constants the calls use.
 * Single-threaded, like the rest of the library OS.
 */
#ifndef PYRITE_FS_VFS_H
#define PYRITE_FS_VFS_H

#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include "fs.h"

struct fs_timespec { int64_t tv_sec; long tv_nsec; };

struct fs_dirent64 {                    /* struct linux_dirent64 */
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
    char d_name[];
};

struct fs_statx_timestamp { int64_t tv_sec; uint32_t tv_nsec; int32_t reserved; };
struct fs_statx {                       /* the kernel's struct statx, 256 bytes */
    uint32_t stx_mask, stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink, stx_uid, stx_gid;
    uint16_t stx_mode, spare0;
    uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
    struct fs_statx_timestamp stx_atime, stx_btime, stx_ctime, stx_mtime;
    uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
    uint64_t spare2[14];
};

/* Linux errno values (the C library's errno.h may lack some). */
#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef EIO
#define EIO 5
#endif
#ifndef EBADF
#define EBADF 9
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif
#ifndef EFAULT
#define EFAULT 14
#endif
#ifndef EBUSY
#define EBUSY 16
#endif
#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef EXDEV
#define EXDEV 18
#endif
#ifndef ENODEV
#define ENODEV 19
#endif
#ifndef ENOTDIR
#define ENOTDIR 20
#endif
#ifndef EISDIR
#define EISDIR 21
#endif
#ifndef EINVAL
#define EINVAL 22
#endif
#ifndef EMFILE
#define EMFILE 24
#endif
#ifndef ENOTTY
#define ENOTTY 25
#endif
#ifndef EFBIG
#define EFBIG 27
#endif
#ifndef ENOSPC
#define ENOSPC 28
#endif
#ifndef ESPIPE
#define ESPIPE 29
#endif
#ifndef EROFS
#define EROFS 30
#endif
#ifndef EMLINK
#define EMLINK 31
#endif
#ifndef ERANGE
#define ERANGE 34
#endif
#ifndef ENAMETOOLONG
#define ENAMETOOLONG 36
#endif
#ifndef ENOSYS
#define ENOSYS 38
#endif
#ifndef ENOTEMPTY
#define ENOTEMPTY 39
#endif
#ifndef ELOOP
#define ELOOP 40
#endif
#ifndef EOVERFLOW
#define EOVERFLOW 75
#endif
#ifndef EUCLEAN
#define EUCLEAN 117
#endif
#ifndef EPERM
#define EPERM 1
#endif
#ifndef EACCES
#define EACCES 13
#endif

/* Linux open flags, mode bits, *at() flags (x86-64 values). */
#define LX_O_ACCMODE   3
#define LX_O_RDONLY    0
#define LX_O_WRONLY    1
#define LX_O_RDWR      2
#define LX_O_CREAT     0100
#define LX_O_EXCL      0200
#define LX_O_NOCTTY    0400
#define LX_O_TRUNC     01000
#define LX_O_APPEND    02000
#define LX_O_NONBLOCK  04000
#define LX_O_DIRECTORY 0200000
#define LX_O_NOFOLLOW  0400000
#define LX_O_CLOEXEC   02000000
#define LX_O_PATH      010000000
#define LX_O_TMPFILE   020000000

#define LX_AT_FDCWD           -100
#define LX_AT_SYMLINK_NOFOLLOW 0x100
#define LX_AT_REMOVEDIR        0x200
#define LX_AT_SYMLINK_FOLLOW   0x400
#define LX_AT_EMPTY_PATH       0x1000
#define LX_RENAME_NOREPLACE    1
#define LX_RENAME_EXCHANGE     2

#define S_IFMT_   0170000
#define S_IFSOCK_ 0140000
#define S_IFLNK_  0120000
#define S_IFREG_  0100000
#define S_IFBLK_  0060000
#define S_IFDIR_  0040000
#define S_IFCHR_  0020000
#define S_IFIFO_  0010000
#define IS_DIR(m) (((m) & S_IFMT_) == S_IFDIR_)
#define IS_REG(m) (((m) & S_IFMT_) == S_IFREG_)
#define IS_LNK(m) (((m) & S_IFMT_) == S_IFLNK_)

#define DT_UNKNOWN_ 0
#define DT_FIFO_ 1
#define DT_CHR_  2
#define DT_DIR_  4
#define DT_BLK_  6
#define DT_REG_  8
#define DT_LNK_  10
#define DT_SOCK_ 12

#define FS_NAME_MAX 255
#define FS_PATH_MAX 4096

struct vnode;
struct mount;

/* One directory entry as a file system's readdir gives it. */
struct dir_entry {
    uint64_t ino;
    uint8_t type;                       /* DT_* */
    uint16_t name_len;
    char name[FS_NAME_MAX + 1];
};

/* What a file system implements. Names are (pointer, length), not NUL-terminated.
 * Calls returning a vnode give a new reference. Errors are -errno. */
struct vnode_ops {
    int (*lookup)(struct vnode *dir, const char *name, size_t len, struct vnode **out);
    /* A new directory entry for a new node of `mode` (regular, directory, symlink with
     * `target`, or device). The name is known not to exist. */
    int (*create)(struct vnode *dir, const char *name, size_t len, uint32_t mode, const char *target,
                  struct vnode **out);
    int (*link)(struct vnode *dir, const char *name, size_t len, struct vnode *node);
    /* Remove the entry `name` of `node` (a directory must be empty: -ENOTEMPTY). */
    int (*unlink)(struct vnode *dir, const char *name, size_t len, struct vnode *node);
    /* Move `node` from (odir, oname) to (ndir, nname), replacing `victim` there if any
     * (already checked: same kind, and a directory victim is to be checked empty). */
    int (*rename)(struct vnode *odir, const char *oname, size_t olen, struct vnode *ndir,
                  const char *nname, size_t nlen, struct vnode *node, struct vnode *victim);
    long (*read)(struct vnode *node, void *buf, size_t n, uint64_t offset);
    long (*write)(struct vnode *node, const void *buf, size_t n, uint64_t offset);
    int (*truncate)(struct vnode *node, uint64_t size);
    /* The entry at *cookie (0 first) and the cookie of the one after it; 0 at the end, 1 found. */
    int (*readdir)(struct vnode *dir, uint64_t *cookie, struct dir_entry *out);
    long (*readlink)(struct vnode *node, char *buf, size_t n);
    int (*update)(struct vnode *node);          /* attributes (mode, times) changed: store them */
    int (*fsync)(struct vnode *node);
    void (*release)(struct vnode *node);        /* the last reference is gone */
    long (*ioctl)(struct vnode *node, unsigned long request, unsigned long arg);
};

struct vnode {
    const struct vnode_ops *ops;
    struct mount *mnt;
    uint64_t ino;
    uint32_t mode, nlink, uid, gid;
    uint64_t size;
    uint64_t blocks;                    /* 512-byte units */
    uint64_t rdev;
    struct fs_timespec atime, mtime, ctime;
    int refs;
    struct mount *mounted;              /* a file system mounted on this directory */
    void *priv;
};

struct mount {
    struct vnode *root;
    struct vnode *mountpoint;           /* NULL for the root file system */
    const char *source;                 /* "ramfs", "vda", ... for messages */
    int read_only;
    int warned_read_only;
    uint32_t dev;                       /* st_dev */
    uint32_t block_size;                /* st_blksize */
    int (*sync)(struct mount *);        /* write everything back; NULL if nothing to write */
    int (*final_sync)(struct mount *);  /* the same at exit, leaving it marked clean */
    int (*writeback)(struct mount *);   /* dirty data to the drive, without flushing the drive */
    void (*statfs)(struct mount *, struct statfs *);   /* sizes and free counts (f_type set) */
    void *priv;
    struct mount *next;
};

/* vfs.c */
void vnode_get(struct vnode *node);
void vnode_put(struct vnode *node);
struct vnode *vfs_root(void);
/* Mount `mnt` (root set) on directory `dir`; registers it for fs_sync_all. */
int vfs_mount(struct mount *mnt, struct vnode *dir);
/* Called by vfs_root() the first time: builds the root file system (boot.c in the guest). */
struct vnode *fs_setup_root(void);
/* -EROFS for a read-only mount (saying so on the console the first time). */
int vfs_check_writable(struct mount *mnt);
struct fs_timespec vfs_now(void);
void vfs_touch(struct vnode *node, int what);  /* FS_TOUCH_* */
#define FS_TOUCH_A 1
#define FS_TOUCH_M 2
#define FS_TOUCH_C 4
uint8_t vfs_dtype(uint32_t mode);

/* Path resolution. */
struct nameidata {
    struct vnode *dir;                  /* parent directory (a reference) */
    struct vnode *node;                 /* the last component's node, or NULL (a reference) */
    const char *name;                   /* last component, inside the caller's path */
    size_t len;
    int trailing_slash;
};
#define LOOKUP_FOLLOW 1                 /* follow a symlink in the last component */
/* Resolve `path` from `dirfd`. With want_parent, *nd gets the parent and last name
 * (node NULL if it does not exist); else nd->node is the resolved node. */
int vfs_lookup(int dirfd, const char *path, int flags, int want_parent, struct nameidata *nd);
void nameidata_done(struct nameidata *nd);
int vfs_resolve(int dirfd, const char *path, int flags, struct vnode **out);

/* file.c: the vnode and cwd behind a descriptor. */
struct vnode *fd_vnode(int fd);
struct vnode *fs_cwd(void);
void fs_set_cwd(struct vnode *node);
/* Close every descriptor but the console's, as a process's end does (files removed while
 * open are freed then). */
void fd_close_all(void);
/* Open `node` (a reference, consumed) as a new descriptor. */
long fd_install(struct vnode *node, int flags);

/* calls.c */
void vfs_fill_stat(struct vnode *node, struct stat *st);
int vfs_chown(struct vnode *node, unsigned uid, unsigned gid);
void vfs_fill_statfs(struct vnode *node, struct statfs *buf);

/* ramfs.c */
struct vnode *ramfs_new(const char *source);
/* A regular file whose contents are `data` (not copied until written). */
int ramfs_adopt(struct vnode *file, const void *data, size_t size);

/* devices.c: the console (fds 0, 1, 2) and /dev nodes. */
extern struct vnode fs_console;
int devices_populate(struct vnode *dev_dir);
/* The operations of the character device `rdev`, or NULL if there is none. */
const struct vnode_ops *device_ops(uint64_t rdev);

/* cpio.c: unpack a newc archive into `root`. Returns files created or -errno; messages
 * about skipped entries go to the console. */
long cpio_unpack(struct vnode *root, const uint8_t *data, size_t size);

#endif

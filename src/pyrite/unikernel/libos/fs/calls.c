/* The calls that take a path: open, stat, mkdir, unlink, rename, link, symlink, ... */
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include "vfs.h"

#define UTIME_NOW_  ((1l << 30) - 1l)
#define UTIME_OMIT_ ((1l << 30) - 2l)
#define EOPNOTSUPP_ 95

static unsigned umask_bits = 022;

long fs_umask(int mask)
{
    unsigned old = umask_bits;
    umask_bits = (unsigned)mask & 0777;
    return old;
}

static int is_dot(const struct nameidata *nd) { return nd->len == 1 && nd->name[0] == '.'; }
static int is_dotdot(const struct nameidata *nd) { return nd->len == 2 && nd->name[0] == '.' && nd->name[1] == '.'; }
/* The path named a directory itself ("/", ".", ".."), not an entry that can be made or removed. */
static int no_entry(const struct nameidata *nd) { return nd->len == 0 || is_dot(nd) || is_dotdot(nd); }
/* A file system's root (mounted somewhere), which cannot be removed or renamed. */
static int is_mount_root(struct vnode *node) { return node->mnt->root == node; }

long fs_openat(int dirfd, const char *path, int flags, int mode)
{
    int access = flags & LX_O_ACCMODE;
    if (access == 3 || (flags & LX_O_TMPFILE) == LX_O_TMPFILE)
        return access == 3 ? -EINVAL : -EOPNOTSUPP_;
    struct vnode *node = NULL;
    int created = 0, err;
    int follow = (flags & LX_O_NOFOLLOW) ? 0 : LOOKUP_FOLLOW;
    if (flags & LX_O_CREAT) {
        struct nameidata nd;
        err = vfs_lookup(dirfd, path, 0, 1, &nd);
        if (err)
            return err;
        if (nd.node && (flags & LX_O_EXCL))
            err = -EEXIST;
        else if (nd.node && IS_LNK(nd.node->mode))
            err = follow ? vfs_resolve(dirfd, path, LOOKUP_FOLLOW, &node) : -ELOOP;
        else if (nd.node) {
            node = nd.node;
            nd.node = NULL;
        } else if (nd.len == 0 || nd.trailing_slash)
            err = -EISDIR;
        else if (!(err = vfs_check_writable(nd.dir->mnt))) {
            err = nd.dir->ops->create(nd.dir, nd.name, nd.len, S_IFREG_ | ((unsigned)mode & 07777 & ~umask_bits),
                                      NULL, &node);
            created = !err;
        }
        nameidata_done(&nd);
        if (err)
            return err;
    } else {
        err = vfs_resolve(dirfd, path, follow, &node);
        if (err)
            return err;
        if (IS_LNK(node->mode) && !(flags & LX_O_PATH)) {
            vnode_put(node);
            return -ELOOP;
        }
    }
    if ((flags & LX_O_DIRECTORY) && !IS_DIR(node->mode))
        err = -ENOTDIR;
    else if (IS_DIR(node->mode) && (access != LX_O_RDONLY || (flags & LX_O_TRUNC)))
        err = -EISDIR;
    else if (!created && IS_REG(node->mode) && (access != LX_O_RDONLY || (flags & LX_O_TRUNC)))
        err = vfs_check_writable(node->mnt);
    if (!err && (flags & LX_O_TRUNC) && IS_REG(node->mode) && node->size) {
        err = node->ops->truncate(node, 0);
        if (!err) {
            vfs_touch(node, FS_TOUCH_M | FS_TOUCH_C);
            err = node->ops->update(node);
        }
    }
    if (err) {
        vnode_put(node);
        return err;
    }
    return fd_install(node, flags);
}

long fs_open(const char *path, int flags, int mode) { return fs_openat(LX_AT_FDCWD, path, flags, mode); }

long fs_creat(const char *path, int mode)
{
    return fs_openat(LX_AT_FDCWD, path, LX_O_CREAT | LX_O_WRONLY | LX_O_TRUNC, mode);
}

long fs_newfstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    if (flags & ~(LX_AT_SYMLINK_NOFOLLOW | LX_AT_EMPTY_PATH | 0x800 /* AT_NO_AUTOMOUNT */))
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(dirfd, path, (flags & LX_AT_SYMLINK_NOFOLLOW ? 0 : LOOKUP_FOLLOW) |
                                        (flags & LX_AT_EMPTY_PATH), &node);
    if (err)
        return err;
    vfs_fill_stat(node, st);
    vnode_put(node);
    return 0;
}

long fs_stat(const char *path, struct stat *st) { return fs_newfstatat(LX_AT_FDCWD, path, st, 0); }
long fs_lstat(const char *path, struct stat *st) { return fs_newfstatat(LX_AT_FDCWD, path, st, LX_AT_SYMLINK_NOFOLLOW); }

long fs_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
    struct fs_statx *stx = (struct fs_statx *)out;
    struct stat st;
    long err = fs_newfstatat(dirfd, path, &st, flags & (LX_AT_SYMLINK_NOFOLLOW | LX_AT_EMPTY_PATH));
    if (err)
        return err;
    memset(stx, 0, sizeof *stx);
    stx->stx_mask = 0x7ff;              /* STATX_BASIC_STATS: no birth time */
    stx->stx_blksize = (uint32_t)st.st_blksize;
    stx->stx_nlink = (uint32_t)st.st_nlink;
    stx->stx_uid = st.st_uid;
    stx->stx_gid = st.st_gid;
    stx->stx_mode = (uint16_t)st.st_mode;
    stx->stx_ino = st.st_ino;
    stx->stx_size = (uint64_t)st.st_size;
    stx->stx_blocks = (uint64_t)st.st_blocks;
    stx->stx_atime = (struct fs_statx_timestamp){st.st_atim.tv_sec, (uint32_t)st.st_atim.tv_nsec, 0};
    stx->stx_mtime = (struct fs_statx_timestamp){st.st_mtim.tv_sec, (uint32_t)st.st_mtim.tv_nsec, 0};
    stx->stx_ctime = (struct fs_statx_timestamp){st.st_ctim.tv_sec, (uint32_t)st.st_ctim.tv_nsec, 0};
    stx->stx_rdev_major = (uint32_t)(st.st_rdev >> 8) & 0xfff;
    stx->stx_rdev_minor = (uint32_t)(st.st_rdev & 0xff);
    stx->stx_dev_major = (uint32_t)(st.st_dev >> 8) & 0xfff;
    stx->stx_dev_minor = (uint32_t)(st.st_dev & 0xff);
    return 0;
}

/* Parent lookup for calls that make an entry: -EEXIST if it is there. */
static int make_entry(int dirfd, const char *path, uint32_t mode, const char *target)
{
    struct nameidata nd;
    int err = vfs_lookup(dirfd, path, 0, 1, &nd);
    if (err)
        return err;
    if (nd.node || no_entry(&nd))
        err = -EEXIST;
    else if (nd.trailing_slash && !IS_DIR(mode))
        err = -ENOENT;
    else if (!(err = vfs_check_writable(nd.dir->mnt))) {
        struct vnode *node;
        err = nd.dir->ops->create(nd.dir, nd.name, nd.len, mode, target, &node);
        if (!err)
            vnode_put(node);
    }
    nameidata_done(&nd);
    return err;
}

long fs_mkdirat(int dirfd, const char *path, int mode)
{
    return make_entry(dirfd, path, S_IFDIR_ | ((unsigned)mode & 07777 & ~umask_bits), NULL);
}

long fs_mkdir(const char *path, int mode) { return fs_mkdirat(LX_AT_FDCWD, path, mode); }

long fs_symlinkat(const char *target, int dirfd, const char *path)
{
    if (!target)
        return -EFAULT;
    size_t len = strnlen(target, FS_PATH_MAX);
    if (!len)
        return -ENOENT;
    if (len >= FS_PATH_MAX)
        return -ENAMETOOLONG;
    return make_entry(dirfd, path, S_IFLNK_ | 0777, target);
}

long fs_symlink(const char *target, const char *path) { return fs_symlinkat(target, LX_AT_FDCWD, path); }

long fs_unlinkat(int dirfd, const char *path, int flags)
{
    if (flags & ~LX_AT_REMOVEDIR)
        return -EINVAL;
    int rmdir = (flags & LX_AT_REMOVEDIR) != 0;
    struct nameidata nd;
    int err = vfs_lookup(dirfd, path, 0, 1, &nd);
    if (err)
        return err;
    if (rmdir && (nd.len == 0 || is_dotdot(&nd)))
        err = nd.len == 0 ? -EBUSY : -ENOTEMPTY;
    else if (rmdir && is_dot(&nd))
        err = -EINVAL;
    else if (!nd.node)
        err = -ENOENT;
    else if (rmdir && !IS_DIR(nd.node->mode))
        err = -ENOTDIR;
    else if (!rmdir && IS_DIR(nd.node->mode))
        err = -EISDIR;
    else if (!rmdir && nd.trailing_slash)
        err = -ENOTDIR;
    else if (is_mount_root(nd.node) || nd.node->mounted)
        err = -EBUSY;
    else if (!(err = vfs_check_writable(nd.dir->mnt)))
        err = nd.dir->ops->unlink(nd.dir, nd.name, nd.len, nd.node);
    nameidata_done(&nd);
    return err;
}

long fs_unlink(const char *path) { return fs_unlinkat(LX_AT_FDCWD, path, 0); }
long fs_rmdir(const char *path) { return fs_unlinkat(LX_AT_FDCWD, path, LX_AT_REMOVEDIR); }

/* Whether `dir` is `node` or lies below it (a directory cannot move into itself). */
static int inside(struct vnode *dir, struct vnode *node)
{
    struct vnode *cur = dir;
    vnode_get(cur);
    int found = 0;
    while (!found && cur->mnt == node->mnt) {
        found = cur == node || cur->ino == node->ino;
        if (found || is_mount_root(cur))
            break;
        struct vnode *parent;
        if (cur->ops->lookup(cur, "..", 2, &parent))
            break;
        vnode_put(cur);
        cur = parent;
    }
    vnode_put(cur);
    return found;
}

static int check_rename(struct nameidata *old, struct nameidata *new, unsigned flags)
{
    struct vnode *node = old->node, *victim = new->node;
    if (no_entry(old) || no_entry(new))
        return -EBUSY;
    if (!node)
        return -ENOENT;
    if (old->dir->mnt != new->dir->mnt)
        return -EXDEV;
    if (is_mount_root(node) || (victim && (is_mount_root(victim) || victim->mounted)) || node->mounted)
        return -EBUSY;
    if (!IS_DIR(node->mode) && (old->trailing_slash || new->trailing_slash))
        return -ENOTDIR;
    if (victim == node)
        return 1;                       /* the same file: nothing to do */
    if (victim && (flags & LX_RENAME_NOREPLACE))
        return -EEXIST;
    if (victim && IS_DIR(node->mode) && !IS_DIR(victim->mode))
        return -ENOTDIR;
    if (victim && !IS_DIR(node->mode) && IS_DIR(victim->mode))
        return -EISDIR;
    if (IS_DIR(node->mode) && inside(new->dir, node))
        return -EINVAL;
    return vfs_check_writable(old->dir->mnt);
}

long fs_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags)
{
    if (flags & ~(unsigned)LX_RENAME_NOREPLACE)
        return -EINVAL;                 /* RENAME_EXCHANGE and RENAME_WHITEOUT are not supported */
    struct nameidata old, new;
    int err = vfs_lookup(olddirfd, oldpath, 0, 1, &old);
    if (err)
        return err;
    err = vfs_lookup(newdirfd, newpath, 0, 1, &new);
    if (err) {
        nameidata_done(&old);
        return err;
    }
    err = check_rename(&old, &new, flags);
    if (err == 0)
        err = old.dir->ops->rename(old.dir, old.name, old.len, new.dir, new.name, new.len, old.node, new.node);
    nameidata_done(&old);
    nameidata_done(&new);
    return err > 0 ? 0 : err;
}

long fs_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    return fs_renameat2(olddirfd, oldpath, newdirfd, newpath, 0);
}

long fs_rename(const char *oldpath, const char *newpath)
{
    return fs_renameat2(LX_AT_FDCWD, oldpath, LX_AT_FDCWD, newpath, 0);
}

long fs_linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
    if (flags & ~(LX_AT_SYMLINK_FOLLOW | LX_AT_EMPTY_PATH))
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(olddirfd, oldpath, (flags & LX_AT_SYMLINK_FOLLOW ? LOOKUP_FOLLOW : 0) |
                                             (flags & LX_AT_EMPTY_PATH), &node);
    if (err)
        return err;
    struct nameidata nd;
    err = vfs_lookup(newdirfd, newpath, 0, 1, &nd);
    if (!err) {
        if (IS_DIR(node->mode))
            err = -EPERM;
        else if (nd.node || no_entry(&nd))
            err = -EEXIST;
        else if (nd.dir->mnt != node->mnt)
            err = -EXDEV;
        else if (!(err = vfs_check_writable(node->mnt)))
            err = nd.dir->ops->link(nd.dir, nd.name, nd.len, node);
        nameidata_done(&nd);
    }
    vnode_put(node);
    return err;
}

long fs_link(const char *oldpath, const char *newpath) { return fs_linkat(LX_AT_FDCWD, oldpath, LX_AT_FDCWD, newpath, 0); }

long fs_readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
    if ((long)size <= 0)
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(dirfd, path, LX_AT_EMPTY_PATH, &node);
    if (err)
        return err;
    long n = IS_LNK(node->mode) ? node->ops->readlink(node, buf, size) : -EINVAL;
    vnode_put(node);
    return n;
}

long fs_readlink(const char *path, char *buf, size_t size) { return fs_readlinkat(LX_AT_FDCWD, path, buf, size); }

long fs_truncate(const char *path, off_t length)
{
    if (length < 0)
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(LX_AT_FDCWD, path, LOOKUP_FOLLOW, &node);
    if (err)
        return err;
    if (IS_DIR(node->mode))
        err = -EISDIR;
    else if (!IS_REG(node->mode))
        err = -EINVAL;
    else if (!(err = vfs_check_writable(node->mnt)) && !(err = node->ops->truncate(node, (uint64_t)length))) {
        vfs_touch(node, FS_TOUCH_M | FS_TOUCH_C);
        err = node->ops->update(node);
        if (!err && node->ops->fsync)
            err = node->ops->fsync(node);
    }
    vnode_put(node);
    return err;
}

long fs_faccessat(int dirfd, const char *path, int mode)
{
    if (mode & ~7)
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(dirfd, path, LOOKUP_FOLLOW, &node);
    if (err)
        return err;
    if ((mode & 2) && !IS_DIR(node->mode) && (node->mode & S_IFMT_) != S_IFCHR_)
        err = node->mnt->read_only ? -EROFS : 0;
    else if ((mode & 2) && IS_DIR(node->mode) && node->mnt->read_only)
        err = -EROFS;
    if (!err && (mode & 1) && !IS_DIR(node->mode) && !(node->mode & 0111))
        err = -EACCES;                  /* root may execute only what someone may */
    vnode_put(node);
    return err;
}

long fs_access(const char *path, int mode) { return fs_faccessat(LX_AT_FDCWD, path, mode); }

long fs_faccessat2(int dirfd, const char *path, int mode, int flags)
{
    if (flags & ~(0x200 /* AT_EACCESS */ | LX_AT_SYMLINK_NOFOLLOW | LX_AT_EMPTY_PATH))
        return -EINVAL;
    return fs_faccessat(dirfd, path, mode);  /* one user, root: real and effective ids agree */
}

void vfs_fill_statfs(struct vnode *node, struct statfs *buf)
{
    memset(buf, 0, sizeof *buf);
    buf->f_bsize = buf->f_frsize = node->mnt->block_size ? node->mnt->block_size : 4096;
    buf->f_namelen = FS_NAME_MAX;
    if (node->mnt->statfs)
        node->mnt->statfs(node->mnt, buf);
    buf->f_flags = node->mnt->read_only ? 1 /* ST_RDONLY */ : 0;
}

long fs_statfs(const char *path, struct statfs *buf)
{
    struct vnode *node;
    int err = vfs_resolve(LX_AT_FDCWD, path, LOOKUP_FOLLOW, &node);
    if (err)
        return err;
    vfs_fill_statfs(node, buf);
    vnode_put(node);
    return 0;
}

long fs_chdir(const char *path)
{
    struct vnode *node;
    int err = vfs_resolve(LX_AT_FDCWD, path, LOOKUP_FOLLOW, &node);
    if (err)
        return err;
    if (IS_DIR(node->mode))
        fs_set_cwd(node);
    else
        err = -ENOTDIR;
    vnode_put(node);
    return err;
}

static int set_time(struct fs_timespec *field, const struct fs_timespec *given, struct fs_timespec now)
{
    if (!given || given->tv_nsec == UTIME_NOW_)
        *field = now;
    else if (given->tv_nsec == UTIME_OMIT_)
        return 0;
    else if (given->tv_nsec < 0 || given->tv_nsec >= 1000000000l)
        return -EINVAL;
    else
        *field = *given;
    return 1;
}

long fs_utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags)
{
    if (flags & ~(LX_AT_SYMLINK_NOFOLLOW | LX_AT_EMPTY_PATH))
        return -EINVAL;
    struct vnode *node;
    int err;
    if (!path) {                        /* futimens(fd, times) */
        node = fd_vnode(dirfd);
        if (!node)
            return -EBADF;
        vnode_get(node);
    } else if ((err = vfs_resolve(dirfd, path, (flags & LX_AT_SYMLINK_NOFOLLOW ? 0 : LOOKUP_FOLLOW) |
                                               (flags & LX_AT_EMPTY_PATH), &node))) {
        return err;
    }
    struct fs_timespec given[2], now = vfs_now();
    const struct fs_timespec *times = ts ? given : NULL;
    for (int i = 0; ts && i < 2; i++)
        given[i] = (struct fs_timespec){ts[i].tv_sec, ts[i].tv_nsec};
    struct vnode saved = *node;
    int a = set_time(&node->atime, times ? &times[0] : NULL, now);
    int m = a < 0 ? a : set_time(&node->mtime, times ? &times[1] : NULL, now);
    err = a < 0 ? a : m < 0 ? m : 0;
    if (!err && (a || m))
        err = vfs_check_writable(node->mnt);
    if (!err && (a || m)) {
        node->ctime = now;
        err = node->ops->update(node);
    }
    if (err) {
        node->atime = saved.atime;
        node->mtime = saved.mtime;
    }
    vnode_put(node);
    return err;
}

long fs_fchmodat(int dirfd, const char *path, int mode)
{
    struct vnode *node;
    int err = vfs_resolve(dirfd, path, LOOKUP_FOLLOW, &node);
    if (err)
        return err;
    if (!(err = vfs_check_writable(node->mnt))) {
        node->mode = (node->mode & S_IFMT_) | ((unsigned)mode & 07777);
        vfs_touch(node, FS_TOUCH_C);
        err = node->ops->update(node);
    }
    vnode_put(node);
    return err;
}

long fs_chmod(const char *path, int mode) { return fs_fchmodat(LX_AT_FDCWD, path, mode); }

/* Owners are stored (the one user is root, who may give files to anyone); -1 keeps one. */
int vfs_chown(struct vnode *node, unsigned uid, unsigned gid)
{
    int err = vfs_check_writable(node->mnt);
    if (err)
        return err;
    if (uid != (unsigned)-1)
        node->uid = uid;
    if (gid != (unsigned)-1)
        node->gid = gid;
    vfs_touch(node, FS_TOUCH_C);
    return node->ops->update ? node->ops->update(node) : 0;
}

long fs_fchownat(int dirfd, const char *path, unsigned uid, unsigned gid, int flags)
{
    if (flags & ~(LX_AT_SYMLINK_NOFOLLOW | LX_AT_EMPTY_PATH))
        return -EINVAL;
    struct vnode *node;
    int err = vfs_resolve(dirfd, path, (flags & LX_AT_SYMLINK_NOFOLLOW ? 0 : LOOKUP_FOLLOW) |
                                       (flags & LX_AT_EMPTY_PATH), &node);
    if (err)
        return err;
    err = vfs_chown(node, uid, gid);
    vnode_put(node);
    return err;
}

long fs_chown(const char *path, unsigned uid, unsigned gid) { return fs_fchownat(LX_AT_FDCWD, path, uid, gid, 0); }
long fs_lchown(const char *path, unsigned uid, unsigned gid)
{
    return fs_fchownat(LX_AT_FDCWD, path, uid, gid, LX_AT_SYMLINK_NOFOLLOW);
}

void vfs_fill_stat(struct vnode *node, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_dev = node->mnt ? node->mnt->dev : 0;
    st->st_ino = node->ino;
    st->st_nlink = node->nlink;
    st->st_mode = node->mode;
    st->st_uid = node->uid;
    st->st_gid = node->gid;
    st->st_rdev = node->rdev;
    st->st_size = (int64_t)node->size;
    st->st_blksize = node->mnt && node->mnt->block_size ? node->mnt->block_size : 4096;
    st->st_blocks = (int64_t)node->blocks;
    st->st_atim.tv_sec = node->atime.tv_sec;
    st->st_atim.tv_nsec = node->atime.tv_nsec;
    st->st_mtim.tv_sec = node->mtime.tv_sec;
    st->st_mtim.tv_nsec = node->mtime.tv_nsec;
    st->st_ctim.tv_sec = node->ctime.tv_sec;
    st->st_ctim.tv_nsec = node->ctime.tv_nsec;
}

/* vnodes, mounts and path resolution. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pyrite/serial.h>
#include "vfs.h"

#define MAX_SYMLINKS 40

static struct vnode *root;
static struct mount *mounts;

void vnode_get(struct vnode *node) { node->refs++; }

void vnode_put(struct vnode *node)
{
    if (node && --node->refs == 0 && node->ops->release)
        node->ops->release(node);
}

struct vnode *vfs_root(void)
{
    if (!root)
        root = fs_setup_root();
    return root;
}

int vfs_mount(struct mount *mnt, struct vnode *dir)
{
    if (dir) {
        if (!IS_DIR(dir->mode))
            return -ENOTDIR;
        if (dir->mounted)
            return -EBUSY;
        vnode_get(dir);
        dir->mounted = mnt;
    }
    mnt->mountpoint = dir;
    mnt->next = mounts;
    mounts = mnt;
    return 0;
}

void fs_sync_all(void)
{
    for (struct mount *m = mounts; m; m = m->next)
        if (m->final_sync)
            m->final_sync(m);
}

long fs_sync(void)
{
    for (struct mount *m = mounts; m; m = m->next)
        if (m->sync)
            m->sync(m);
    return 0;
}

int vfs_check_writable(struct mount *mnt)
{
    if (!mnt->read_only)
        return 0;
    if (!mnt->warned_read_only) {
        static const char head[] = "pyrite: ", tail[] = " is mounted read-only (a read-only drive): "
                                                         "writes fail with EROFS\n";
        mnt->warned_read_only = 1;
        serial_write(head, sizeof head - 1);
        serial_write(mnt->source, strlen(mnt->source));
        serial_write(tail, sizeof tail - 1);
    }
    return -EROFS;
}

struct fs_timespec vfs_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (struct fs_timespec){0, 0};
    return (struct fs_timespec){ts.tv_sec, ts.tv_nsec};
}

void vfs_touch(struct vnode *node, int what)
{
    struct fs_timespec now = vfs_now();
    if (what & FS_TOUCH_A)
        node->atime = now;
    if (what & FS_TOUCH_M)
        node->mtime = now;
    if (what & FS_TOUCH_C)
        node->ctime = now;
}

uint8_t vfs_dtype(uint32_t mode)
{
    switch (mode & S_IFMT_) {
    case S_IFREG_: return DT_REG_;
    case S_IFDIR_: return DT_DIR_;
    case S_IFLNK_: return DT_LNK_;
    case S_IFCHR_: return DT_CHR_;
    case S_IFBLK_: return DT_BLK_;
    case S_IFIFO_: return DT_FIFO_;
    case S_IFSOCK_: return DT_SOCK_;
    }
    return DT_UNKNOWN_;
}

/* The node a directory shows: a mounted file system's root if one sits on it. */
static struct vnode *cross_mounts(struct vnode *node)
{
    while (node->mounted) {
        struct vnode *top = node->mounted->root;
        vnode_get(top);
        vnode_put(node);
        node = top;
    }
    return node;
}

/* One step from directory `cur` through `name`: ".", ".." (across mounts) or an entry. */
static int step(struct vnode *cur, const char *name, size_t len, struct vnode **out)
{
    if (!IS_DIR(cur->mode))
        return -ENOTDIR;
    if (len > FS_NAME_MAX)
        return -ENAMETOOLONG;
    if (len == 1 && name[0] == '.') {
        vnode_get(cur);
        *out = cur;
        return 0;
    }
    if (len == 2 && name[0] == '.' && name[1] == '.') {
        while (cur != root && cur->mnt->root == cur && cur->mnt->mountpoint)
            cur = cur->mnt->mountpoint;     /* ".." of a mounted root is its mountpoint's */
        if (cur == root) {
            vnode_get(cur);
            *out = cur;
            return 0;
        }
    }
    struct vnode *next;
    int err = cur->ops->lookup(cur, name, len, &next);
    if (err)
        return err;
    *out = cross_mounts(next);
    return 0;
}

static int walk(struct vnode *cur, const char *path, int flags, int want_parent, struct nameidata *nd,
                int *links);

static int follow_link(struct vnode *dir, struct vnode *link, int *links, struct vnode **out)
{
    if (++*links > MAX_SYMLINKS)
        return -ELOOP;
    char *target = malloc(FS_PATH_MAX);
    if (!target)
        return -ENOMEM;
    long n = link->ops->readlink(link, target, FS_PATH_MAX - 1);
    int err = n < 0 ? (int)n : 0;
    if (!err) {
        target[n] = 0;
        struct nameidata sub;
        vnode_get(dir);
        err = walk(dir, target, LOOKUP_FOLLOW, 0, &sub, links);
        if (!err)
            *out = sub.node;
    }
    free(target);
    return err;
}

/* Resolve `path` starting at `cur` (a reference, consumed). */
static int walk(struct vnode *cur, const char *path, int flags, int want_parent, struct nameidata *nd,
                int *links)
{
    memset(nd, 0, sizeof *nd);
    if (*path == '/') {
        vnode_put(cur);
        cur = vfs_root();
        vnode_get(cur);
    }
    const char *p = path;
    while (*p == '/')
        p++;
    if (!*p) {                          /* "/" or only slashes: the start itself */
        nd->dir = cur;
        vnode_get(cur);
        nd->node = cur;
        nd->name = p;
        nd->trailing_slash = 1;
        return 0;
    }
    for (;;) {
        const char *name = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - name);
        const char *rest = p;
        while (*rest == '/')
            rest++;
        int last = !*rest, trailing = last && rest != p;
        p = rest;
        if (len > FS_NAME_MAX) {
            vnode_put(cur);
            return -ENAMETOOLONG;
        }
        if (last && want_parent) {
            if (!IS_DIR(cur->mode)) {
                vnode_put(cur);
                return -ENOTDIR;
            }
            nd->dir = cur;
            nd->name = name;
            nd->len = len;
            nd->trailing_slash = trailing;
            int err = step(cur, name, len, &nd->node);
            if (err == -ENOENT) {
                nd->node = NULL;
                return 0;
            }
            if (err) {
                vnode_put(cur);
                nd->dir = NULL;
            }
            return err;
        }
        struct vnode *next;
        int err = step(cur, name, len, &next);
        if (!err && IS_LNK(next->mode) && (!last || (flags & LOOKUP_FOLLOW) || trailing)) {
            struct vnode *target;
            err = follow_link(cur, next, links, &target);
            vnode_put(next);
            next = err ? NULL : target;
        }
        vnode_put(cur);
        if (err)
            return err;
        cur = next;
        if (last) {
            if (trailing && !IS_DIR(cur->mode)) {
                vnode_put(cur);
                return -ENOTDIR;
            }
            nd->node = cur;
            return 0;
        }
    }
}

static int start_dir(int dirfd, const char *path, struct vnode **out)
{
    if (path[0] == '/') {
        *out = vfs_root();
    } else if (dirfd == LX_AT_FDCWD) {
        *out = fs_cwd();
    } else {
        *out = fd_vnode(dirfd);
        if (!*out)
            return -EBADF;
        if (!IS_DIR((*out)->mode) && *path)
            return -ENOTDIR;
    }
    vnode_get(*out);
    return 0;
}

int vfs_lookup(int dirfd, const char *path, int flags, int want_parent, struct nameidata *nd)
{
    memset(nd, 0, sizeof *nd);
    if (!path)
        return -EFAULT;
    if (!*path)
        return -ENOENT;
    if (strnlen(path, FS_PATH_MAX) >= FS_PATH_MAX)
        return -ENAMETOOLONG;
    struct vnode *start;
    int err = start_dir(dirfd, path, &start);
    if (err)
        return err;
    int links = 0;
    return walk(start, path, flags, want_parent, nd, &links);
}

void nameidata_done(struct nameidata *nd)
{
    vnode_put(nd->node);
    vnode_put(nd->dir);
    nd->node = nd->dir = NULL;
}

int vfs_resolve(int dirfd, const char *path, int flags, struct vnode **out)
{
    if (path && !*path && (flags & LX_AT_EMPTY_PATH)) {    /* the descriptor itself */
        struct vnode *node = dirfd == LX_AT_FDCWD ? fs_cwd() : fd_vnode(dirfd);
        if (!node)
            return -EBADF;
        vnode_get(node);
        *out = node;
        return 0;
    }
    struct nameidata nd;
    int err = vfs_lookup(dirfd, path, flags & LOOKUP_FOLLOW, 0, &nd);
    if (!err)
        *out = nd.node;
    return err;
}

/* getcwd: walk up through ".." and find each directory's name in its parent. */
static int name_in_parent(struct vnode *parent, struct vnode *child, struct dir_entry *ent)
{
    uint64_t cookie = 0;
    int found;
    while ((found = parent->ops->readdir(parent, &cookie, ent)) > 0) {
        int dots = (ent->name_len == 1 && ent->name[0] == '.') ||
                   (ent->name_len == 2 && ent->name[0] == '.' && ent->name[1] == '.');
        if (!dots && ent->ino == child->ino)
            return 0;
    }
    return found < 0 ? found : -ENOENT;
}

long fs_getcwd(char *buf, size_t size)
{
    vfs_root();
    char *path = malloc(FS_PATH_MAX);
    struct dir_entry *ent = malloc(sizeof *ent);
    long err = (!path || !ent) ? -ENOMEM : 0;
    size_t at = FS_PATH_MAX - 1;
    struct vnode *cur = fs_cwd();
    vnode_get(cur);
    if (!err && cur->nlink == 0)
        err = -ENOENT;                  /* the directory was removed */
    while (!err) {
        struct vnode *child = cur;      /* its entry lives in the file system it is mounted in */
        while (child != root && child->mnt->root == child && child->mnt->mountpoint)
            child = child->mnt->mountpoint;
        if (child == root)
            break;
        struct vnode *parent;
        err = child->ops->lookup(child, "..", 2, &parent);
        if (err)
            break;
        err = name_in_parent(parent, child, ent);
        if (!err && at < ent->name_len + 1u)
            err = -ENAMETOOLONG;
        if (!err) {
            at -= ent->name_len;
            memcpy(path + at, ent->name, ent->name_len);
            path[--at] = '/';
        }
        vnode_put(cur);
        cur = parent;
    }
    vnode_put(cur);
    if (!err) {
        path[FS_PATH_MAX - 1] = 0;
        if (at == FS_PATH_MAX - 1)
            path[--at] = '/';
        size_t len = FS_PATH_MAX - 1 - at;
        if (len + 1 > size)
            err = -ERANGE;
        else {
            memcpy(buf, path + at, len + 1);
            err = (long)len + 1;
        }
    }
    free(path);
    free(ent);
    return err;
}

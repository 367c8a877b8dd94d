/*
 * Unpack a cpio archive in the "newc" format (magic 070701, or 070702 with checksums),
 * the format of Linux's initramfs, into a directory. File data is not copied: the files
 * point into the archive until written.
 */
#include <string.h>
#include <pyrite/serial.h>
#include "vfs.h"

#define HEADER_SIZE 110
#define TRAILER "TRAILER!!!"

enum { F_INO, F_MODE, F_UID, F_GID, F_NLINK, F_MTIME, F_FILESIZE, F_DEVMAJOR, F_DEVMINOR,
       F_RDEVMAJOR, F_RDEVMINOR, F_NAMESIZE, F_CHECK, NR_FIELDS };

static void say(const char *a, const char *b, size_t blen)
{
    static const char head[] = "pyrite: initrd: ";
    serial_write(head, sizeof head - 1);
    serial_write(a, strlen(a));
    serial_write(b, blen);
    serial_write("\n", 1);
}

static int parse_header(const uint8_t *h, uint32_t fields[NR_FIELDS])
{
    if (memcmp(h, "07070", 5) || (h[5] != '1' && h[5] != '2'))
        return -EINVAL;
    for (int f = 0; f < NR_FIELDS; f++) {
        uint32_t v = 0;
        for (int i = 0; i < 8; i++) {
            uint8_t c = h[6 + 8 * f + i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
                    c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                return -EINVAL;
            v = v << 4 | (uint32_t)d;
        }
        fields[f] = v;
    }
    return 0;
}

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

/* The directory holding `path`'s last component (made if missing); *name is that component. */
static int parent_of(struct vnode *root, const char *path, size_t len, struct vnode **out,
                     const char **name, size_t *name_len)
{
    struct vnode *dir = root;
    vnode_get(dir);
    size_t at = 0;
    for (;;) {
        while (at < len && (path[at] == '/' || (path[at] == '.' && (at + 1 == len || path[at + 1] == '/')))) {
            at++;                       /* empty and "." components */
            if (at == len) {
                *out = dir;             /* names the directory itself */
                *name = ".";
                *name_len = 1;
                return 0;
            }
        }
        size_t end = at;
        while (end < len && path[end] != '/')
            end++;
        if (end == len) {
            *out = dir;
            *name = path + at;
            *name_len = end - at;
            return 0;
        }
        struct vnode *next;
        int err = dir->ops->lookup(dir, path + at, end - at, &next);
        if (err == -ENOENT)
            err = dir->ops->create(dir, path + at, end - at, S_IFDIR_ | 0755, NULL, &next);
        vnode_put(dir);
        if (err)
            return err;
        if (!IS_DIR(next->mode)) {
            vnode_put(next);
            return -ENOTDIR;
        }
        dir = next;
        at = end + 1;
    }
}

static int unpack_entry(struct vnode *root, const char *path, size_t len, const uint32_t *f,
                        const uint8_t *data)
{
    uint32_t mode = f[F_MODE], type = mode & S_IFMT_;
    struct vnode *dir, *node = NULL;
    const char *name;
    size_t name_len;
    if (len == 0 || (len == 1 && path[0] == '.')) {     /* the root directory itself */
        node = root;
        vnode_get(node);
    } else {
        int err = parent_of(root, path, len, &dir, &name, &name_len);
        if (err)
            return err;
        if (name_len > FS_NAME_MAX) {
            vnode_put(dir);
            return -ENAMETOOLONG;
        }
        if (name_len == 1 && name[0] == '.') {
            err = IS_DIR(mode) ? 0 : -EEXIST;   /* "a/." or "a/": the directory a itself */
            if (!err) {
                node = dir;
                vnode_get(node);
            }
        } else {
            err = dir->ops->lookup(dir, name, name_len, &node);
        }
        if (err == 0 && (node->mode & S_IFMT_) != type) {
            vnode_put(node);
            err = -EEXIST;
        } else if (err == -ENOENT) {
            char target[FS_PATH_MAX];
            if (type == S_IFLNK_) {
                if (f[F_FILESIZE] >= sizeof target)
                    err = -ENAMETOOLONG;
                else {
                    memcpy(target, data, f[F_FILESIZE]);
                    target[f[F_FILESIZE]] = 0;
                }
            }
            if (err == -ENOENT)
                err = dir->ops->create(dir, name, name_len, mode, type == S_IFLNK_ ? target : NULL, &node);
        }
        vnode_put(dir);
        if (err)
            return err;
    }
    int err = 0;
    if (type == S_IFREG_ && f[F_FILESIZE])
        err = ramfs_adopt(node, data, f[F_FILESIZE]);
    node->mode = mode;
    node->uid = f[F_UID];
    node->gid = f[F_GID];
    node->rdev = ((uint64_t)f[F_RDEVMAJOR] << 8) | f[F_RDEVMINOR];
    node->mtime = node->ctime = node->atime = (struct fs_timespec){f[F_MTIME], 0};
    vnode_put(node);
    return err;
}

long cpio_unpack(struct vnode *root, const uint8_t *data, size_t size)
{
    size_t at = 0;
    long files = 0;
    for (;;) {
        uint32_t f[NR_FIELDS];
        if (size - at < HEADER_SIZE || parse_header(data + at, f)) {
            say(at ? "truncated or damaged archive at a header" :
                     "not a cpio archive in the newc format (070701); not unpacked", "", 0);
            return -EINVAL;
        }
        size_t name_at = at + HEADER_SIZE, namesize = f[F_NAMESIZE];
        size_t data_at = align4(name_at + namesize), filesize = f[F_FILESIZE];
        if (namesize == 0 || namesize > size - name_at || data_at > size || filesize > size - data_at) {
            say("truncated archive", "", 0);
            return -EINVAL;
        }
        const char *path = (const char *)data + name_at;
        size_t len = namesize - 1;
        if (len == sizeof TRAILER - 1 && !memcmp(path, TRAILER, len))
            return files;
        while (len && path[0] == '/')
            path++, len--;
        if (len >= 2 && path[0] == '.' && path[1] == '/')
            path += 2, len -= 2;
        uint32_t type = f[F_MODE] & S_IFMT_;
        if (type != S_IFREG_ && type != S_IFDIR_ && type != S_IFLNK_ && type != S_IFCHR_) {
            say("skipped (not a file, directory, symlink or character device): ", path, len);
        } else {
            int err = unpack_entry(root, path, len, f, data + data_at);
            if (err)
                say("could not unpack ", path, len);
            else
                files++;
        }
        at = align4(data_at + filesize);
    }
}

/* ramfs: files and directories in memory (the root file system). */
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include "vfs.h"

struct ram_entry {
    char *name;                         /* NULL: a removed entry's slot (readdir cookies stay put) */
    size_t len;
    struct vnode *node;
};

struct ram_node {
    struct vnode v;
    struct vnode *parent;               /* directories */
    struct ram_entry *entries;
    size_t nr_entries, cap_entries;
    uint8_t *data;                      /* files and symlinks */
    size_t cap;                         /* 0 with data set: borrowed (the initrd), copied on write */
};

#define RAM(node) ((struct ram_node *)(node))

static const struct vnode_ops ramfs_ops;
static uint64_t next_ino = 2;

static struct vnode *new_node(struct mount *mnt, uint32_t mode)
{
    struct ram_node *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->v.ops = &ramfs_ops;
    r->v.mnt = mnt;
    r->v.ino = next_ino++;
    r->v.mode = mode;
    r->v.nlink = IS_DIR(mode) ? 2 : 1;
    r->v.refs = 1;
    vfs_touch(&r->v, FS_TOUCH_A | FS_TOUCH_M | FS_TOUCH_C);
    return &r->v;
}

static void free_node(struct vnode *node)
{
    struct ram_node *r = RAM(node);
    for (size_t i = 0; i < r->nr_entries; i++)
        free(r->entries[i].name);
    free(r->entries);
    if (r->cap)
        free(r->data);
    free(r);
}

static void ramfs_release(struct vnode *node)
{
    if (node->nlink == 0)
        free_node(node);
}

static struct ram_entry *find(struct vnode *dir, const char *name, size_t len)
{
    struct ram_node *d = RAM(dir);
    for (size_t i = 0; i < d->nr_entries; i++)
        if (d->entries[i].name && d->entries[i].len == len && !memcmp(d->entries[i].name, name, len))
            return &d->entries[i];
    return NULL;
}

static int ramfs_lookup(struct vnode *dir, const char *name, size_t len, struct vnode **out)
{
    struct vnode *node;
    if (len == 2 && name[0] == '.' && name[1] == '.') {
        node = RAM(dir)->parent;
    } else {
        struct ram_entry *e = find(dir, name, len);
        if (!e)
            return -ENOENT;
        node = e->node;
    }
    vnode_get(node);
    *out = node;
    return 0;
}

static int add_entry(struct vnode *dir, const char *name, size_t len, struct vnode *node)
{
    struct ram_node *d = RAM(dir);
    struct ram_entry *slot = NULL;
    for (size_t i = 0; i < d->nr_entries && !slot; i++)
        if (!d->entries[i].name)
            slot = &d->entries[i];
    if (!slot) {
        if (d->nr_entries == d->cap_entries) {
            size_t cap = d->cap_entries ? 2 * d->cap_entries : 8;
            struct ram_entry *grown = realloc(d->entries, cap * sizeof *grown);
            if (!grown)
                return -ENOMEM;
            d->entries = grown;
            d->cap_entries = cap;
        }
        slot = &d->entries[d->nr_entries++];
        slot->name = NULL;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = 0;
    *slot = (struct ram_entry){copy, len, node};
    dir->size = d->nr_entries;
    vfs_touch(dir, FS_TOUCH_M | FS_TOUCH_C);
    return 0;
}

static void remove_entry(struct vnode *dir, struct ram_entry *e)
{
    free(e->name);
    e->name = NULL;
    e->node = NULL;
    vfs_touch(dir, FS_TOUCH_M | FS_TOUCH_C);
}

static int set_data(struct vnode *node, const char *data, size_t len);

static int ramfs_create(struct vnode *dir, const char *name, size_t len, uint32_t mode, const char *target,
                        struct vnode **out)
{
    struct vnode *node = new_node(dir->mnt, mode);
    if (!node)
        return -ENOMEM;
    int err = 0;
    if (IS_LNK(mode))
        err = set_data(node, target, strlen(target));
    if (!err)
        err = add_entry(dir, name, len, node);
    if (err) {
        node->nlink = 0;
        vnode_put(node);
        return err;
    }
    if (IS_DIR(mode)) {
        RAM(node)->parent = dir;
        dir->nlink++;
    }
    *out = node;
    return 0;
}

static int ramfs_link(struct vnode *dir, const char *name, size_t len, struct vnode *node)
{
    int err = add_entry(dir, name, len, node);
    if (!err) {
        node->nlink++;
        vfs_touch(node, FS_TOUCH_C);
    }
    return err;
}

static int dir_is_empty(struct vnode *dir)
{
    struct ram_node *d = RAM(dir);
    for (size_t i = 0; i < d->nr_entries; i++)
        if (d->entries[i].name)
            return 0;
    return 1;
}

static void drop_link(struct vnode *dir, struct vnode *node)
{
    if (IS_DIR(node->mode)) {
        node->nlink = 0;
        dir->nlink--;
    } else {
        node->nlink--;
    }
    vfs_touch(node, FS_TOUCH_C);
}

static int ramfs_unlink(struct vnode *dir, const char *name, size_t len, struct vnode *node)
{
    struct ram_entry *e = find(dir, name, len);
    if (!e)
        return -ENOENT;
    if (IS_DIR(node->mode) && !dir_is_empty(node))
        return -ENOTEMPTY;
    remove_entry(dir, e);
    drop_link(dir, node);
    return 0;
}

static int ramfs_rename(struct vnode *odir, const char *oname, size_t olen, struct vnode *ndir,
                        const char *nname, size_t nlen, struct vnode *node, struct vnode *victim)
{
    struct ram_entry *old = find(odir, oname, olen);
    if (!old)
        return -ENOENT;
    if (victim) {
        if (IS_DIR(victim->mode) && !dir_is_empty(victim))
            return -ENOTEMPTY;
        struct ram_entry *there = find(ndir, nname, nlen);
        there->node = node;             /* the name now points at the moved node */
        drop_link(ndir, victim);
        vfs_touch(ndir, FS_TOUCH_M | FS_TOUCH_C);
    } else {
        int err = add_entry(ndir, nname, nlen, node);
        if (err)
            return err;
        old = find(odir, oname, olen);  /* add_entry may have moved the array */
    }
    remove_entry(odir, old);
    if (IS_DIR(node->mode) && odir != ndir) {
        RAM(node)->parent = ndir;
        odir->nlink--;
        ndir->nlink++;
    }
    vfs_touch(node, FS_TOUCH_C);
    return 0;
}

/* Make the data writable and at least `size` bytes of capacity (new bytes zero). */
static int reserve(struct vnode *node, size_t size)
{
    struct ram_node *r = RAM(node);
    if (r->cap >= size && (r->cap || !r->data))
        return 0;
    size_t cap = r->cap < 64 ? 64 : r->cap;
    while (cap < size)
        cap = cap > SIZE_MAX / 2 ? size : 2 * cap;
    uint8_t *data = r->cap ? realloc(r->data, cap) : malloc(cap);
    if (!data)
        return -ENOSPC;
    if (!r->cap && r->data)             /* borrowed: copy it out */
        memcpy(data, r->data, node->size);
    memset(data + node->size, 0, cap - node->size);
    r->data = data;
    r->cap = cap;
    node->blocks = (cap + 511) / 512;
    return 0;
}

static int set_data(struct vnode *node, const char *data, size_t len)
{
    int err = reserve(node, len);
    if (!err) {
        memcpy(RAM(node)->data, data, len);
        node->size = len;
    }
    return err;
}

static long ramfs_read(struct vnode *node, void *buf, size_t n, uint64_t offset)
{
    if (offset >= node->size)
        return 0;
    if (n > node->size - offset)
        n = (size_t)(node->size - offset);
    memcpy(buf, RAM(node)->data + offset, n);
    return (long)n;
}

static long ramfs_write(struct vnode *node, const void *buf, size_t n, uint64_t offset)
{
    if (offset + n < offset || offset + n > (uint64_t)1 << 40)
        return -EFBIG;
    if (!n)
        return 0;
    int err = reserve(node, (size_t)(offset + n));
    if (err)
        return err;
    memcpy(RAM(node)->data + offset, buf, n);
    if (offset + n > node->size)
        node->size = offset + n;
    return (long)n;
}

static int ramfs_truncate(struct vnode *node, uint64_t size)
{
    if (size > (uint64_t)1 << 40)
        return -EFBIG;
    if (size > node->size) {
        int err = reserve(node, (size_t)size);
        if (err)
            return err;
    } else if (RAM(node)->cap) {
        memset(RAM(node)->data + size, 0, node->size - size);   /* a later extension reads zeros */
    } else if (size == 0) {
        RAM(node)->data = NULL;                                 /* borrowed: let go of it */
        node->blocks = 0;
    } else if (size < node->size && RAM(node)->data) {
        int err = reserve(node, node->size);                    /* borrowed: own it first */
        if (err)
            return err;
        memset(RAM(node)->data + size, 0, node->size - size);
    }
    node->size = size;
    return 0;
}

static int ramfs_readdir(struct vnode *dir, uint64_t *cookie, struct dir_entry *out)
{
    struct ram_node *d = RAM(dir);
    for (;;) {
        uint64_t at = *cookie;
        const char *name;
        size_t len;
        struct vnode *node;
        if (at == 0) {
            name = ".", len = 1, node = dir;
        } else if (at == 1) {
            name = "..", len = 2, node = d->parent;
        } else if (at - 2 < d->nr_entries) {
            struct ram_entry *e = &d->entries[at - 2];
            name = e->name, len = e->len, node = e->node;
        } else {
            return 0;
        }
        *cookie = at + 1;
        if (!name)
            continue;
        out->ino = node->ino;
        out->type = vfs_dtype(node->mode);
        out->name_len = (uint16_t)len;
        memcpy(out->name, name, len);
        out->name[len] = 0;
        return 1;
    }
}

static long ramfs_readlink(struct vnode *node, char *buf, size_t n)
{
    if (n > node->size)
        n = (size_t)node->size;
    memcpy(buf, RAM(node)->data, n);
    return (long)n;
}

static int ramfs_update(struct vnode *node) { return 0; }

static const struct vnode_ops ramfs_ops = {
    .lookup = ramfs_lookup, .create = ramfs_create, .link = ramfs_link, .unlink = ramfs_unlink,
    .rename = ramfs_rename, .read = ramfs_read, .write = ramfs_write, .truncate = ramfs_truncate,
    .readdir = ramfs_readdir, .readlink = ramfs_readlink, .update = ramfs_update,
    .release = ramfs_release,
};

static void ramfs_statfs(struct mount *mnt, struct statfs *buf) { buf->f_type = 0x858458f6; /* RAMFS_MAGIC */ }

struct vnode *ramfs_new(const char *source)
{
    static uint32_t next_dev = 0x10;
    struct mount *mnt = calloc(1, sizeof *mnt);
    struct vnode *root = mnt ? new_node(mnt, S_IFDIR_ | 0755) : NULL;
    if (!root) {
        free(mnt);
        return NULL;
    }
    RAM(root)->parent = root;
    mnt->root = root;
    mnt->source = source;
    mnt->dev = next_dev++;
    mnt->block_size = 4096;
    mnt->statfs = ramfs_statfs;
    return root;
}

int ramfs_adopt(struct vnode *file, const void *data, size_t size)
{
    struct ram_node *r = RAM(file);
    if (r->cap || file->size)
        return -EINVAL;
    r->data = (uint8_t *)data;
    file->size = size;
    file->blocks = (size + 511) / 512;
    return 0;
}

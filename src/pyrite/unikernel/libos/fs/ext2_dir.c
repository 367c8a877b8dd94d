/*
 * ext2 directories: blocks of linked entries (inode, rec_len, name_len, file_type, name),
 * searched linearly. A hashed (dir_index) directory that we change loses its index flag,
 * as the format allows: the linear entries are all there.
 */
#include <string.h>
#include "ext2.h"

#define ENTRY_SIZE(len) ((8u + (len) + 3u) & ~3u)

typedef int (*entry_fn)(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev,
                        struct buf *b, void *ctx);

static uint8_t disk_type(uint32_t mode)
{
    static const uint8_t types[16] = {[S_IFREG_ >> 12] = 1, [S_IFDIR_ >> 12] = 2, [S_IFCHR_ >> 12] = 3,
                                      [S_IFBLK_ >> 12] = 4, [S_IFIFO_ >> 12] = 5, [S_IFSOCK_ >> 12] = 6,
                                      [S_IFLNK_ >> 12] = 7};
    return types[(mode & S_IFMT_) >> 12];
}

static uint8_t dt_of_disk(uint8_t type)
{
    static const uint8_t dt[8] = {DT_UNKNOWN_, DT_REG_, DT_DIR_, DT_CHR_, DT_BLK_, DT_FIFO_, DT_SOCK_, DT_LNK_};
    return type < 8 ? dt[type] : DT_UNKNOWN_;
}

static int has_filetype(struct ext2_fs *fs) { return (fs->sb.feature_incompat & EXT2_INCOMPAT_FILETYPE) != 0; }

static int entry_ok(struct ext2_fs *fs, struct ext2_dirent *e, uint32_t off)
{
    return e->rec_len >= 8 && !(e->rec_len & 3) && off + e->rec_len <= fs->block_size &&
           8u + e->name_len <= e->rec_len;
}

/* Call fn on every entry in directory blocks [from, until), until it returns non-zero. */
static int scan_blocks(struct vnode *dir, uint64_t from, uint64_t until, entry_fn fn, void *ctx)
{
    struct ext2_fs *fs = EXT2_FS(dir);
    uint64_t nblocks = dir->size / fs->block_size;
    if (until > nblocks)
        until = nblocks;
    for (uint64_t lblock = from; lblock < until; lblock++) {
        uint32_t block;
        int err = ext2_bmap(dir, lblock, 0, &block);
        if (err)
            return err;
        if (!block)
            return ext2_corrupt(fs, "a hole in a directory");
        struct buf *b = bread(fs->cache, block, &err);
        if (!b)
            return err;
        struct ext2_dirent *prev = NULL;
        for (uint32_t off = 0; off < fs->block_size;) {
            struct ext2_dirent *e = (struct ext2_dirent *)(b->data + off);
            if (!entry_ok(fs, e, off)) {
                brelse(b);
                return ext2_corrupt(fs, "a bad directory entry");
            }
            int r = fn(fs, e, prev, b, ctx);
            if (r) {
                brelse(b);
                return r;
            }
            prev = e;
            off += e->rec_len;
        }
        brelse(b);
    }
    return 0;
}

static int scan(struct vnode *dir, entry_fn fn, void *ctx) { return scan_blocks(dir, 0, UINT64_MAX, fn, ctx); }

struct name_ctx {
    const char *name;
    size_t len;
    uint32_t ino;                       /* found, or the new value (set_entry) */
    uint8_t type;
};

static int matches(struct ext2_dirent *e, struct name_ctx *c)
{
    return e->inode && e->name_len == c->len && !memcmp(e->name, c->name, c->len);
}

static int find_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b, void *ctx)
{
    struct name_ctx *c = ctx;
    if (!matches(e, c))
        return 0;
    c->ino = e->inode;
    return 1;
}

static int remove_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b,
                     void *ctx)
{
    if (!matches(e, ctx))
        return 0;
    if (prev)
        prev->rec_len += e->rec_len;
    else
        e->inode = 0;
    bdirty(b);
    return 1;
}

static int set_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b, void *ctx)
{
    struct name_ctx *c = ctx;
    if (!matches(e, c))
        return 0;
    e->inode = c->ino;
    if (has_filetype(fs))
        e->file_type = c->type;
    bdirty(b);
    return 1;
}

static void fill(struct ext2_fs *fs, struct ext2_dirent *e, struct name_ctx *c)
{
    e->inode = c->ino;
    e->name_len = (uint8_t)c->len;
    e->file_type = has_filetype(fs) ? c->type : 0;
    memcpy(e->name, c->name, c->len);
}

static int insert_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b,
                     void *ctx)
{
    struct name_ctx *c = ctx;
    uint32_t used = e->inode ? ENTRY_SIZE(e->name_len) : 0, need = ENTRY_SIZE(c->len);
    if (e->rec_len < used + need)
        return 0;
    if (used) {                         /* split the entry's slack off into the new one */
        struct ext2_dirent *n = (struct ext2_dirent *)((uint8_t *)e + used);
        n->rec_len = (uint16_t)(e->rec_len - used);
        e->rec_len = (uint16_t)used;
        e = n;
    }
    fill(fs, e, c);
    bdirty(b);
    return 1;
}

static int not_empty_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b,
                        void *ctx)
{
    int dot = e->name_len == 1 && e->name[0] == '.';
    int dotdot = e->name_len == 2 && e->name[0] == '.' && e->name[1] == '.';
    return e->inode && !dot && !dotdot;
}

/* The directory is about to change: store its times, drop a hash index it may have. */
static int dir_changed(struct vnode *dir)
{
    EXT2_NODE(dir)->raw.flags &= ~(uint32_t)EXT2_INDEX_FL;
    vfs_touch(dir, FS_TOUCH_M | FS_TOUCH_C);
    return ext2_write_inode(dir);
}

static int add_entry(struct vnode *dir, const char *name, size_t len, uint32_t ino, uint32_t mode)
{
    struct ext2_fs *fs = EXT2_FS(dir);
    struct name_ctx c = {name, len, ino, disk_type(mode)};
    int r = scan(dir, insert_fn, &c);
    if (r == 0) {                       /* no room: a new block with just this entry */
        uint32_t block;
        int err = ext2_bmap(dir, dir->size / fs->block_size, 1, &block);
        if (err)
            return err;
        struct buf *b = bnew(fs->cache, block, &err);
        if (!b)
            return err;
        struct ext2_dirent *e = (struct ext2_dirent *)b->data;
        e->rec_len = (uint16_t)fs->block_size;
        fill(fs, e, &c);
        bdirty(b);
        brelse(b);
        dir->size += fs->block_size;
        r = 1;
    }
    return r < 0 ? r : dir_changed(dir);
}

static int remove_entry(struct vnode *dir, const char *name, size_t len)
{
    struct name_ctx c = {name, len, 0, 0};
    int r = scan(dir, remove_fn, &c);
    if (r == 0)
        return -ENOENT;
    return r < 0 ? r : dir_changed(dir);
}

static int is_empty(struct vnode *dir)
{
    int r = scan(dir, not_empty_fn, NULL);
    return r < 0 ? r : r == 0;
}

static int ext2_lookup(struct vnode *dir, const char *name, size_t len, struct vnode **out)
{
    struct name_ctx c = {name, len, 0, 0};
    int r = scan(dir, find_fn, &c);
    if (r <= 0)
        return r ? r : -ENOENT;
    return ext2_iget(EXT2_FS(dir), c.ino, out);
}

/* A new directory's first block: "." and "..". */
static int init_dir(struct vnode *node, struct vnode *parent)
{
    struct ext2_fs *fs = EXT2_FS(node);
    uint32_t block;
    int err = ext2_bmap(node, 0, 1, &block);
    if (err)
        return err;
    struct buf *b = bnew(fs->cache, block, &err);
    if (!b)
        return err;
    struct ext2_dirent *dot = (struct ext2_dirent *)b->data;
    fill(fs, dot, &(struct name_ctx){".", 1, (uint32_t)node->ino, 2});
    dot->rec_len = 12;
    struct ext2_dirent *dotdot = (struct ext2_dirent *)(b->data + 12);
    fill(fs, dotdot, &(struct name_ctx){"..", 2, (uint32_t)parent->ino, 2});
    dotdot->rec_len = (uint16_t)(fs->block_size - 12);
    bdirty(b);
    brelse(b);
    node->size = fs->block_size;
    node->nlink = 2;
    return 0;
}

static int ext2_create(struct vnode *dir, const char *name, size_t len, uint32_t mode, const char *target,
                       struct vnode **out)
{
    struct ext2_fs *fs = EXT2_FS(dir);
    if (IS_DIR(mode) && dir->nlink >= 65000)
        return -EMLINK;
    uint32_t ino;
    int err = ext2_alloc_inode(fs, (uint32_t)dir->ino, IS_DIR(mode), &ino);
    if (err)
        return err;
    struct vnode *node;
    if ((err = ext2_inew(fs, ino, mode, &node))) {
        ext2_free_inode(fs, ino, IS_DIR(mode));
        return err;
    }
    if (IS_DIR(mode)) {
        err = init_dir(node, dir);
    } else if (IS_LNK(mode)) {
        size_t tlen = strlen(target);
        if (tlen < sizeof EXT2_NODE(node)->raw.block) {
            memcpy(EXT2_NODE(node)->raw.block, target, tlen);
            node->size = tlen;
        } else {
            long n = ext2_write(node, target, tlen, 0);
            err = n < 0 ? (int)n : 0;
        }
    }
    if (!err)
        err = ext2_write_inode(node);
    if (!err)
        err = add_entry(dir, name, len, ino, mode);
    if (err) {
        node->nlink = 0;                /* freed by the release below */
        vnode_put(node);
        return err;
    }
    if (IS_DIR(mode)) {
        dir->nlink++;
        ext2_write_inode(dir);
    }
    *out = node;
    return 0;
}

static int ext2_link(struct vnode *dir, const char *name, size_t len, struct vnode *node)
{
    if (node->nlink >= 65000)
        return -EMLINK;
    int err = add_entry(dir, name, len, (uint32_t)node->ino, node->mode);
    if (err)
        return err;
    node->nlink++;
    vfs_touch(node, FS_TOUCH_C);
    return ext2_write_inode(node);
}

/* `node` lost the name it had in `dir`. */
static int drop_link(struct vnode *dir, struct vnode *node)
{
    if (IS_DIR(node->mode)) {
        node->nlink = 0;
        dir->nlink--;
        ext2_write_inode(dir);
    } else {
        node->nlink--;
    }
    vfs_touch(node, FS_TOUCH_C);
    return ext2_write_inode(node);
}

static int ext2_unlink(struct vnode *dir, const char *name, size_t len, struct vnode *node)
{
    if (IS_DIR(node->mode)) {
        int empty = is_empty(node);
        if (empty <= 0)
            return empty < 0 ? empty : -ENOTEMPTY;
    }
    int err = remove_entry(dir, name, len);
    return err ? err : drop_link(dir, node);
}

static int ext2_rename(struct vnode *odir, const char *oname, size_t olen, struct vnode *ndir,
                       const char *nname, size_t nlen, struct vnode *node, struct vnode *victim)
{
    int err;
    if (victim) {
        if (IS_DIR(victim->mode)) {
            int empty = is_empty(victim);
            if (empty <= 0)
                return empty < 0 ? empty : -ENOTEMPTY;
        }
        struct name_ctx c = {nname, nlen, (uint32_t)node->ino, disk_type(node->mode)};
        err = scan(ndir, set_fn, &c);
        if (err <= 0)
            return err ? err : -ENOENT;
        if ((err = dir_changed(ndir)) || (err = drop_link(ndir, victim)))
            return err;
    } else if ((err = add_entry(ndir, nname, nlen, (uint32_t)node->ino, node->mode))) {
        return err;
    }
    if ((err = remove_entry(odir, oname, olen)))
        return err;
    if (IS_DIR(node->mode) && odir != ndir) {
        struct name_ctx c = {"..", 2, (uint32_t)ndir->ino, 2};
        if ((err = scan(node, set_fn, &c)) < 0)
            return err;
        odir->nlink--;
        ndir->nlink++;
        ext2_write_inode(odir);
        ext2_write_inode(ndir);
    }
    vfs_touch(node, FS_TOUCH_C);
    return ext2_write_inode(node);
}

struct readdir_ctx {
    uint32_t from, found_at;
    struct dir_entry *out;
};

static int readdir_fn(struct ext2_fs *fs, struct ext2_dirent *e, struct ext2_dirent *prev, struct buf *b,
                      void *ctx)
{
    struct readdir_ctx *c = ctx;
    uint32_t off = (uint32_t)((uint8_t *)e - b->data);
    if (off < c->from || !e->inode)
        return 0;
    c->out->ino = e->inode;
    c->out->type = dt_of_disk(has_filetype(fs) ? e->file_type : 0);
    c->out->name_len = e->name_len;
    memcpy(c->out->name, e->name, e->name_len);
    c->out->name[e->name_len] = 0;
    c->found_at = off + e->rec_len;
    return 1;
}

/* Cookies are byte offsets in the directory; each block is scanned from its start, so a
 * cookie stays good when entries before it are merged away. */
static int ext2_readdir(struct vnode *dir, uint64_t *cookie, struct dir_entry *out)
{
    struct ext2_fs *fs = EXT2_FS(dir);
    while (*cookie < dir->size) {
        uint64_t lblock = *cookie / fs->block_size;
        struct readdir_ctx c = {(uint32_t)(*cookie % fs->block_size), 0, out};
        int r = scan_blocks(dir, lblock, lblock + 1, readdir_fn, &c);
        if (r < 0)
            return r;
        if (r > 0) {
            *cookie = lblock * fs->block_size + c.found_at;
            return 1;
        }
        *cookie = (lblock + 1) * fs->block_size;
    }
    return 0;
}

const struct vnode_ops ext2_ops = {
    .lookup = ext2_lookup, .create = ext2_create, .link = ext2_link, .unlink = ext2_unlink,
    .rename = ext2_rename, .read = ext2_read, .write = ext2_write, .truncate = ext2_truncate,
    .readdir = ext2_readdir, .readlink = ext2_readlink, .update = ext2_update, .fsync = ext2_fsync,
    .release = ext2_release,
};

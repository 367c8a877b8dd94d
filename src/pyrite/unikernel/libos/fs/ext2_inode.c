/* ext2: inodes, and file contents through direct and indirect (single, double, triple) blocks. */
#include <stdlib.h>
#include <string.h>
#include "ext2.h"

#define EA_MAGIC 0xEA020000u
#define MAX_RUN 256                     /* blocks per direct transfer */

static int inode_location(struct ext2_fs *fs, uint32_t ino, uint32_t *block, uint32_t *offset)
{
    if (ino < 1 || ino > fs->sb.inodes_count)
        return ext2_corrupt(fs, "an inode number out of range");
    uint32_t g = (ino - 1) / fs->sb.inodes_per_group;
    uint64_t byte = (uint64_t)((ino - 1) % fs->sb.inodes_per_group) * fs->inode_size;
    *block = fs->groups[g].inode_table + (uint32_t)(byte / fs->block_size);
    *offset = (uint32_t)(byte % fs->block_size);
    return 0;
}

static void from_raw(struct ext2_node *n)
{
    struct ext2_inode *r = &n->raw;
    n->v.mode = r->mode;
    n->v.uid = r->uid | (uint32_t)r->uid_high << 16;
    n->v.gid = r->gid | (uint32_t)r->gid_high << 16;
    n->v.size = r->size | (IS_REG(r->mode) ? (uint64_t)r->size_high << 32 : 0);
    n->v.nlink = r->links_count;
    n->v.blocks = r->blocks;
    n->v.atime = (struct fs_timespec){r->atime, 0};
    n->v.mtime = (struct fs_timespec){r->mtime, 0};
    n->v.ctime = (struct fs_timespec){r->ctime, 0};
    if ((r->mode & S_IFMT_) == S_IFCHR_ || (r->mode & S_IFMT_) == S_IFBLK_) {
        uint32_t dev = r->block[0] ? r->block[0] : r->block[1];
        n->v.rdev = r->block[0] ? ((dev >> 8) & 0xff) << 8 | (dev & 0xff)
                                : ((dev & 0xfff00) >> 8) << 8 | (dev & 0xff);
    }
}

static void to_raw(struct ext2_fs *fs, struct ext2_node *n)
{
    struct ext2_inode *r = &n->raw;
    r->mode = (uint16_t)n->v.mode;
    r->uid = (uint16_t)n->v.uid;
    r->uid_high = (uint16_t)(n->v.uid >> 16);
    r->gid = (uint16_t)n->v.gid;
    r->gid_high = (uint16_t)(n->v.gid >> 16);
    r->size = (uint32_t)n->v.size;
    if (IS_REG(n->v.mode)) {
        r->size_high = (uint32_t)(n->v.size >> 32);
        if (n->v.size >> 31 && !(fs->sb.feature_ro_compat & EXT2_RO_COMPAT_LARGE_FILE)) {
            fs->sb.feature_ro_compat |= EXT2_RO_COMPAT_LARGE_FILE;
            ext2_changed(fs);
        }
    }
    r->links_count = (uint16_t)n->v.nlink;
    r->blocks = (uint32_t)n->v.blocks;
    r->atime = (uint32_t)n->v.atime.tv_sec;
    r->mtime = (uint32_t)n->v.mtime.tv_sec;
    r->ctime = (uint32_t)n->v.ctime.tv_sec;
}

int ext2_write_inode(struct vnode *node)
{
    struct ext2_fs *fs = EXT2_FS(node);
    struct ext2_node *n = EXT2_NODE(node);
    uint32_t block, offset;
    int err = inode_location(fs, (uint32_t)node->ino, &block, &offset);
    if (err)
        return err;
    struct buf *b = bread(fs->cache, block, &err);
    if (!b)
        return err;
    to_raw(fs, n);
    memcpy(b->data + offset, &n->raw, sizeof n->raw);   /* the extra part (xattrs, ...) is kept */
    bdirty(b);
    brelse(b);
    ext2_changed(fs);
    return 0;
}

static struct ext2_node *new_node(struct ext2_fs *fs, uint32_t ino)
{
    struct ext2_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->v.ops = &ext2_ops;
    n->v.mnt = &fs->mnt;
    n->v.ino = ino;
    n->v.refs = 1;
    n->next = fs->live;
    fs->live = n;
    return n;
}

int ext2_iget(struct ext2_fs *fs, uint32_t ino, struct vnode **out)
{
    for (struct ext2_node *n = fs->live; n; n = n->next)
        if (n->v.ino == ino) {
            vnode_get(&n->v);
            *out = &n->v;
            return 0;
        }
    uint32_t block, offset;
    int err = inode_location(fs, ino, &block, &offset);
    if (err)
        return err;
    struct buf *b = bread(fs->cache, block, &err);
    if (!b)
        return err;
    struct ext2_node *n = new_node(fs, ino);
    if (n)
        memcpy(&n->raw, b->data + offset, sizeof n->raw);
    brelse(b);
    if (!n)
        return -ENOMEM;
    from_raw(n);
    if (n->v.nlink == 0 || !n->v.mode) {
        vnode_put(&n->v);
        return ext2_corrupt(fs, "a directory entry names a free inode");
    }
    *out = &n->v;
    return 0;
}

int ext2_inew(struct ext2_fs *fs, uint32_t ino, uint32_t mode, struct vnode **out)
{
    uint32_t block, offset;
    int err = inode_location(fs, ino, &block, &offset);
    if (err)
        return err;
    struct buf *b = bread(fs->cache, block, &err);
    if (!b)
        return err;
    memset(b->data + offset, 0, fs->inode_size);
    if (fs->extra_isize)
        memcpy(b->data + offset + 128, &(uint16_t){(uint16_t)fs->extra_isize}, 2);
    bdirty(b);
    brelse(b);
    struct ext2_node *n = new_node(fs, ino);
    if (!n)
        return -ENOMEM;
    n->v.mode = mode;
    n->v.nlink = 1;
    n->raw.generation = (uint32_t)vfs_now().tv_nsec ^ ino;
    vfs_touch(&n->v, FS_TOUCH_A | FS_TOUCH_M | FS_TOUCH_C);
    *out = &n->v;
    return 0;
}

/* Path through the block tree to file block `lblock`: depth and one index per level. */
static int block_path(struct ext2_fs *fs, uint64_t lblock, uint32_t idx[4])
{
    uint64_t n = fs->ptrs_per_block;
    if (lblock < EXT2_NDIR) {
        idx[0] = (uint32_t)lblock;
        return 0;
    }
    lblock -= EXT2_NDIR;
    if (lblock < n) {
        idx[0] = EXT2_IND, idx[1] = (uint32_t)lblock;
        return 1;
    }
    lblock -= n;
    if (lblock < n * n) {
        idx[0] = EXT2_DIND, idx[1] = (uint32_t)(lblock / n), idx[2] = (uint32_t)(lblock % n);
        return 2;
    }
    lblock -= n * n;
    if (lblock < n * n * n) {
        idx[0] = EXT2_TIND, idx[1] = (uint32_t)(lblock / (n * n)), idx[2] = (uint32_t)(lblock / n % n);
        idx[3] = (uint32_t)(lblock % n);
        return 3;
    }
    return -EFBIG;
}

static int alloc_for(struct vnode *node, uint32_t *out)
{
    struct ext2_fs *fs = EXT2_FS(node);
    uint32_t goal = EXT2_NODE(node)->goal;
    if (!goal)
        goal = fs->sb.first_data_block + (uint32_t)((node->ino - 1) / fs->sb.inodes_per_group) *
                                         fs->sb.blocks_per_group;
    int err = ext2_alloc_block(fs, goal, out);
    if (!err) {
        EXT2_NODE(node)->goal = *out + 1;
        node->blocks += fs->block_size / 512;
    }
    return err;
}

static int bmap(struct vnode *node, uint64_t lblock, int create, uint32_t *out, int *fresh)
{
    struct ext2_fs *fs = EXT2_FS(node);
    uint32_t idx[4];
    int depth = block_path(fs, lblock, idx), err = 0;
    if (depth < 0)
        return depth;
    uint32_t *slot = &EXT2_NODE(node)->raw.block[idx[0]];
    struct buf *holder = NULL;
    *fresh = 0;
    for (int level = 0;; level++) {
        if (!*slot) {
            if (!create) {
                *out = 0;
                break;
            }
            uint32_t block;
            if ((err = alloc_for(node, &block)))
                break;
            if (level < depth) {        /* a new indirect block starts as zeros */
                struct buf *b = bnew(fs->cache, block, &err);
                if (!b) {
                    ext2_free_block(fs, block);
                    node->blocks -= fs->block_size / 512;
                    break;
                }
                bdirty(b);
                brelse(b);
            } else {
                *fresh = 1;
            }
            *slot = block;
            if (holder)
                bdirty(holder);
        }
        if (*slot >= fs->sb.blocks_count) {
            err = ext2_corrupt(fs, "a file block number out of range");
            break;
        }
        if (level == depth) {
            *out = *slot;
            break;
        }
        struct buf *next = bread(fs->cache, *slot, &err);
        brelse(holder);
        holder = next;
        if (!holder)
            return err;
        slot = &((uint32_t *)holder->data)[idx[level + 1]];
    }
    brelse(holder);
    return err;
}

int ext2_bmap(struct vnode *node, uint64_t lblock, int create, uint32_t *out)
{
    int fresh;
    return bmap(node, lblock, create, out, &fresh);
}

/* How many of the `max` file blocks from `lblock` sit right after `first` on the disk. */
static uint32_t contiguous(struct vnode *node, uint64_t lblock, uint32_t first, uint32_t max, int create)
{
    uint32_t count = 1;
    while (count < max) {
        uint32_t next;
        int fresh;
        if (!create && (bmap(node, lblock + count, 0, &next, &fresh) || next != first + count))
            break;
        if (create) {                   /* allocate only if it lands right after */
            if (bmap(node, lblock + count, 0, &next, &fresh) || (next && next != first + count))
                break;
            if (!next && (EXT2_NODE(node)->goal != first + count ||
                          bmap(node, lblock + count, 1, &next, &fresh) || next != first + count))
                break;
        }
        count++;
    }
    return count;
}

long ext2_read(struct vnode *node, void *buf, size_t n, uint64_t offset)
{
    struct ext2_fs *fs = EXT2_FS(node);
    if (offset >= node->size)
        return 0;
    if (n > node->size - offset)
        n = (size_t)(node->size - offset);
    size_t done = 0;
    while (done < n) {
        uint64_t lblock = (offset + done) / fs->block_size;
        uint32_t within = (uint32_t)((offset + done) % fs->block_size), block;
        size_t chunk = fs->block_size - within < n - done ? fs->block_size - within : n - done;
        int err = ext2_bmap(node, lblock, 0, &block);
        if (err)
            return done ? (long)done : err;
        uint8_t *to = (uint8_t *)buf + done;
        if (!block) {
            memset(to, 0, chunk);
        } else if (within == 0 && chunk == fs->block_size && n - done >= 2 * (size_t)fs->block_size) {
            uint32_t max = (uint32_t)((n - done) / fs->block_size);
            uint32_t count = contiguous(node, lblock, block, max < MAX_RUN ? max : MAX_RUN, 0);
            chunk = (size_t)count * fs->block_size;
            if ((err = bcache_read_direct(fs->cache, block, count, to)))
                return done ? (long)done : err;
        } else {
            struct buf *b = bread(fs->cache, block, &err);
            if (!b)
                return done ? (long)done : err;
            memcpy(to, b->data + within, chunk);
            brelse(b);
        }
        done += chunk;
    }
    return (long)done;
}

long ext2_write(struct vnode *node, const void *buf, size_t n, uint64_t offset)
{
    struct ext2_fs *fs = EXT2_FS(node);
    size_t done = 0;
    int err = 0;
    while (done < n) {
        uint64_t lblock = (offset + done) / fs->block_size;
        uint32_t within = (uint32_t)((offset + done) % fs->block_size), block;
        size_t chunk = fs->block_size - within < n - done ? fs->block_size - within : n - done;
        int fresh;
        if ((err = bmap(node, lblock, 1, &block, &fresh)))
            break;
        const uint8_t *from = (const uint8_t *)buf + done;
        if (within == 0 && chunk == fs->block_size && n - done >= 2 * (size_t)fs->block_size) {
            uint32_t max = (uint32_t)((n - done) / fs->block_size);
            uint32_t count = contiguous(node, lblock, block, max < MAX_RUN ? max : MAX_RUN, 1);
            chunk = (size_t)count * fs->block_size;
            if ((err = bcache_write_direct(fs->cache, block, count, from)))
                break;
        } else {
            struct buf *b = fresh ? bnew(fs->cache, block, &err) : bread(fs->cache, block, &err);
            if (!b)
                break;
            memcpy(b->data + within, from, chunk);
            bdirty(b);
            brelse(b);
        }
        done += chunk;
        if (offset + done > node->size)
            node->size = offset + done;
    }
    int werr = ext2_write_inode(node);
    if (!done)
        return err ? err : werr;
    return (long)done;
}

/* Free the blocks of the subtree in *slot (covering `span` file blocks from `base`) at or
 * after file block `first`; the slot is cleared if all of it went. */
static void free_tree(struct vnode *node, uint32_t *slot, int level, uint64_t base, uint64_t span,
                      uint64_t first, int *changed)
{
    struct ext2_fs *fs = EXT2_FS(node);
    if (!*slot)
        return;
    if (level > 0) {
        int err, dirty = 0;
        struct buf *b = bread(fs->cache, *slot, &err);
        if (!b)
            return;
        uint64_t child = span / fs->ptrs_per_block;
        for (uint32_t j = 0; j < fs->ptrs_per_block; j++) {
            uint64_t cbase = base + j * child;
            if (cbase + child > first)
                free_tree(node, &((uint32_t *)b->data)[j], level - 1, cbase, child, first, &dirty);
        }
        if (dirty)
            bdirty(b);
        brelse(b);
    }
    if (base >= first) {
        ext2_free_block(fs, *slot);
        node->blocks -= fs->block_size / 512;
        *slot = 0;
        *changed = 1;
    }
}

int ext2_truncate(struct vnode *node, uint64_t size)
{
    struct ext2_fs *fs = EXT2_FS(node);
    uint64_t n = fs->ptrs_per_block, bs = fs->block_size;
    if (size > node->size) {
        uint32_t idx[4];
        if (block_path(fs, (size - 1) / bs, idx) < 0)
            return -EFBIG;
    } else if (size < node->size) {
        uint64_t first = (size + bs - 1) / bs;
        uint32_t *blocks = EXT2_NODE(node)->raw.block;
        int changed = 0;
        for (uint32_t i = 0; i < EXT2_NDIR; i++)
            if (i >= first)
                free_tree(node, &blocks[i], 0, i, 1, first, &changed);
        free_tree(node, &blocks[EXT2_IND], 1, EXT2_NDIR, n, first, &changed);
        free_tree(node, &blocks[EXT2_DIND], 2, EXT2_NDIR + n, n * n, first, &changed);
        free_tree(node, &blocks[EXT2_TIND], 3, EXT2_NDIR + n + n * n, n * n * n, first, &changed);
        uint32_t block;
        if (size % bs && !ext2_bmap(node, size / bs, 0, &block) && block) {
            int err;
            struct buf *b = bread(fs->cache, block, &err);  /* the tail reads as zeros if extended */
            if (b) {
                memset(b->data + size % bs, 0, bs - size % bs);
                bdirty(b);
                brelse(b);
            }
        }
        EXT2_NODE(node)->goal = 0;
    }
    node->size = size;
    return ext2_write_inode(node);
}

int ext2_fast_symlink(struct vnode *node)
{
    struct ext2_node *n = EXT2_NODE(node);
    uint32_t ea_blocks = n->raw.file_acl ? EXT2_FS(node)->block_size / 512 : 0;
    return IS_LNK(node->mode) && n->raw.blocks == ea_blocks;
}

long ext2_readlink(struct vnode *node, char *buf, size_t n)
{
    if (n > node->size)
        n = (size_t)node->size;
    if (ext2_fast_symlink(node)) {
        memcpy(buf, EXT2_NODE(node)->raw.block, n < 60 ? n : 60);
        return (long)(n < 60 ? n : 60);
    }
    return ext2_read(node, buf, n, 0);
}

/* An extended attribute block: one reference fewer, freed with its last. */
static void drop_xattr_block(struct ext2_fs *fs, struct vnode *node)
{
    uint32_t block = EXT2_NODE(node)->raw.file_acl;
    int err;
    struct buf *b = block < fs->sb.blocks_count ? bread(fs->cache, block, &err) : NULL;
    if (!b)
        return;
    uint32_t *header = (uint32_t *)b->data;
    int last = header[0] != EA_MAGIC || header[1] <= 1;
    if (!last) {
        header[1]--;
        bdirty(b);
    }
    brelse(b);
    if (last)
        ext2_free_block(fs, block);
    node->blocks -= fs->block_size / 512;
    EXT2_NODE(node)->raw.file_acl = 0;
}

void ext2_release(struct vnode *node)
{
    struct ext2_fs *fs = EXT2_FS(node);
    for (struct ext2_node **p = &fs->live; *p; p = &(*p)->next)
        if (*p == EXT2_NODE(node)) {
            *p = EXT2_NODE(node)->next;
            break;
        }
    if (node->nlink == 0 && !fs->mnt.read_only) {   /* the last name and the last user gone */
        if (ext2_fast_symlink(node))
            memset(EXT2_NODE(node)->raw.block, 0, sizeof EXT2_NODE(node)->raw.block);
        else
            ext2_truncate(node, 0);
        if (EXT2_NODE(node)->raw.file_acl)
            drop_xattr_block(fs, node);
        node->size = 0;
        EXT2_NODE(node)->raw.dtime = (uint32_t)vfs_now().tv_sec;
        ext2_write_inode(node);
        ext2_free_inode(fs, (uint32_t)node->ino, IS_DIR(node->mode));
    }
    free(node);
}

int ext2_update(struct vnode *node) { return ext2_write_inode(node); }

int ext2_fsync(struct vnode *node) { return node->mnt->sync(node->mnt); }

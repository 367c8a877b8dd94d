/* ext2: mounting, block and inode bitmaps, writing the superblock and group descriptors back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <pyrite/serial.h>
#include "ext2.h"

#define CACHE_BYTES (8u << 20)          /* block cache per file system */

static void say(struct ext2_fs *fs, const char *what)
{
    char line[256];
    int n = snprintf(line, sizeof line, "pyrite: %s: %s\n", fs->cache->dev->name, what);
    serial_write(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

int ext2_corrupt(struct ext2_fs *fs, const char *what)
{
    char line[200];
    snprintf(line, sizeof line, "ext2 file system damaged (%s): run e2fsck on the image", what);
    say(fs, line);
    return -EUCLEAN;
}

void ext2_changed(struct ext2_fs *fs)
{
    fs->super_dirty = 1;
    if (!fs->marked_unclean) {          /* until the final sync, a crash leaves it "not clean" */
        fs->marked_unclean = 1;
        fs->sb.state &= (uint16_t)~EXT2_VALID_FS;
        fs->sb.mtime = (uint32_t)vfs_now().tv_sec;
        fs->sb.mnt_count++;
    }
}

static uint32_t group_of_block(struct ext2_fs *fs, uint32_t block)
{
    return (block - fs->sb.first_data_block) / fs->sb.blocks_per_group;
}

/* Find and set a clear bit in a group's bitmap, from `start`, below `limit`: its index or -1. */
static long take_bit(struct ext2_fs *fs, uint32_t bitmap_block, uint32_t start, uint32_t limit, int *err)
{
    struct buf *b = bread(fs->cache, bitmap_block, err);
    if (!b)
        return -1;
    long found = -1;
    for (uint32_t i = start; i < limit; i++) {
        if ((i & 7) == 0 && b->data[i >> 3] == 0xff && i + 8 <= limit) {
            i += 7;
            continue;
        }
        if (!(b->data[i >> 3] & (1u << (i & 7)))) {
            b->data[i >> 3] |= (uint8_t)(1u << (i & 7));
            bdirty(b);
            found = i;
            break;
        }
    }
    brelse(b);
    return found;
}

static int clear_bit(struct ext2_fs *fs, uint32_t bitmap_block, uint32_t bit)
{
    int err;
    struct buf *b = bread(fs->cache, bitmap_block, &err);
    if (!b)
        return err;
    int was = (b->data[bit >> 3] >> (bit & 7)) & 1;
    b->data[bit >> 3] &= (uint8_t)~(1u << (bit & 7));
    bdirty(b);
    brelse(b);
    return was ? 0 : ext2_corrupt(fs, "freeing a block or inode that is not in use");
}

int ext2_alloc_block(struct ext2_fs *fs, uint32_t goal, uint32_t *out)
{
    if (goal < fs->sb.first_data_block || goal >= fs->sb.blocks_count)
        goal = fs->sb.first_data_block;
    uint32_t first_group = group_of_block(fs, goal);
    for (uint32_t n = 0; n <= fs->nr_groups; n++) {
        uint32_t g = (first_group + n) % fs->nr_groups;
        if (!fs->groups[g].free_blocks_count)
            continue;
        uint32_t base = fs->sb.first_data_block + g * fs->sb.blocks_per_group;
        uint32_t limit = fs->sb.blocks_count - base < fs->sb.blocks_per_group ?
                         fs->sb.blocks_count - base : fs->sb.blocks_per_group;
        uint32_t start = n == 0 ? goal - base : 0;
        int err = 0;
        long bit = take_bit(fs, fs->groups[g].block_bitmap, start, limit, &err);
        if (bit < 0 && !err && start)
            bit = take_bit(fs, fs->groups[g].block_bitmap, 0, start, &err);
        if (err)
            return err;
        if (bit < 0)
            continue;
        fs->groups[g].free_blocks_count--;
        fs->sb.free_blocks_count--;
        ext2_changed(fs);
        *out = base + (uint32_t)bit;
        return 0;
    }
    return -ENOSPC;
}

void ext2_free_block(struct ext2_fs *fs, uint32_t block)
{
    if (block < fs->sb.first_data_block || block >= fs->sb.blocks_count) {
        ext2_corrupt(fs, "a block number out of range");
        return;
    }
    uint32_t g = group_of_block(fs, block);
    bforget(fs->cache, block);
    if (clear_bit(fs, fs->groups[g].block_bitmap, (block - fs->sb.first_data_block) % fs->sb.blocks_per_group))
        return;
    fs->groups[g].free_blocks_count++;
    fs->sb.free_blocks_count++;
    ext2_changed(fs);
}

int ext2_alloc_inode(struct ext2_fs *fs, uint32_t dir_ino, int is_dir, uint32_t *out)
{
    uint32_t first_group = (dir_ino - 1) / fs->sb.inodes_per_group;
    for (uint32_t n = 0; n < fs->nr_groups; n++) {
        uint32_t g = (first_group + n) % fs->nr_groups;
        if (!fs->groups[g].free_inodes_count)
            continue;
        uint32_t start = g == 0 ? fs->sb.first_ino - 1 : 0;    /* inodes 1..first_ino-1 are reserved */
        int err = 0;
        long bit = take_bit(fs, fs->groups[g].inode_bitmap, start, fs->sb.inodes_per_group, &err);
        if (err)
            return err;
        if (bit < 0)
            continue;
        fs->groups[g].free_inodes_count--;
        fs->sb.free_inodes_count--;
        if (is_dir)
            fs->groups[g].used_dirs_count++;
        ext2_changed(fs);
        *out = g * fs->sb.inodes_per_group + (uint32_t)bit + 1;
        return 0;
    }
    return -ENOSPC;
}

void ext2_free_inode(struct ext2_fs *fs, uint32_t ino, int is_dir)
{
    uint32_t g = (ino - 1) / fs->sb.inodes_per_group;
    if (clear_bit(fs, fs->groups[g].inode_bitmap, (ino - 1) % fs->sb.inodes_per_group))
        return;
    fs->groups[g].free_inodes_count++;
    fs->sb.free_inodes_count++;
    if (is_dir)
        fs->groups[g].used_dirs_count--;
    ext2_changed(fs);
}

void ext2_dirs_changed(struct ext2_fs *fs, uint32_t ino, int delta)
{
    fs->groups[(ino - 1) / fs->sb.inodes_per_group].used_dirs_count += (uint16_t)delta;
}

/* Superblock and group descriptors into their cache blocks. */
static int write_super(struct ext2_fs *fs)
{
    int err;
    uint32_t sb_block = fs->block_size == 1024 ? 1 : 0, sb_offset = fs->block_size == 1024 ? 0 : 1024;
    struct buf *b = bread(fs->cache, sb_block, &err);
    if (!b)
        return err;
    fs->sb.wtime = (uint32_t)vfs_now().tv_sec;
    memcpy(b->data + sb_offset, &fs->sb, sizeof fs->sb);
    bdirty(b);
    brelse(b);
    size_t table = (size_t)fs->nr_groups * sizeof(struct ext2_group);
    for (size_t done = 0, blk = fs->sb.first_data_block + 1; done < table; done += fs->block_size, blk++) {
        b = bread(fs->cache, blk, &err);
        if (!b)
            return err;
        size_t n = table - done < fs->block_size ? table - done : fs->block_size;
        memcpy(b->data, (uint8_t *)fs->groups + done, n);
        bdirty(b);
        brelse(b);
    }
    fs->super_dirty = 0;
    return 0;
}

/* Dirty blocks to the drive; `flush`: and the drive's cache to its medium; `final`: marked clean. */
static int ext2_sync(struct mount *mnt, int final, int flush)
{
    struct ext2_fs *fs = (struct ext2_fs *)mnt;
    if (mnt->read_only)
        return 0;
    if (final && fs->marked_unclean) {
        fs->sb.state |= EXT2_VALID_FS;
        fs->super_dirty = 1;
        fs->marked_unclean = 0;
    }
    int err = fs->super_dirty ? write_super(fs) : 0;
    return err ? err : bcache_sync(fs->cache, flush);
}

static int refuse(struct ext2_fs *fs, const char *why)
{
    say(fs, why);
    return -EINVAL;
}

static int read_super(struct ext2_fs *fs, struct blockdev *dev)
{
    char why[160];
    if (dev->sectors < 4 || dev->read(dev, 2, &fs->sb, 2))
        return refuse(fs, "cannot read the superblock");
    struct ext2_super *sb = &fs->sb;
    if (sb->magic != EXT2_MAGIC)
        return -ENODEV;                 /* not ext2 at all: left alone, no message */
    uint32_t bs = 1024u << (sb->log_block_size & 3);
    if (sb->rev_level < 1 || sb->log_block_size > 2 || !sb->blocks_per_group || !sb->inodes_per_group ||
        sb->blocks_per_group > 8 * bs || sb->inodes_per_group > 8 * bs || sb->inode_size < 128 ||
        sb->inode_size > bs || (sb->inode_size & (sb->inode_size - 1)) || sb->first_ino < 11 ||
        sb->first_ino > sb->inodes_count || sb->first_data_block != (bs == 1024) ||
        sb->blocks_count <= sb->first_data_block || (uint64_t)sb->blocks_count * bs / 512 > dev->sectors)
        return refuse(fs, "ext2 superblock not usable (revision 1, block size 1-4 KiB, image as large as the file system)");
    if (sb->feature_incompat & ~EXT2_INCOMPAT_SUPPORTED) {
        snprintf(why, sizeof why, "not mounted: ext2/3/4 features not supported (incompat 0x%x): make it with "
                 "`mke2fs -t ext2`", sb->feature_incompat & ~EXT2_INCOMPAT_SUPPORTED);
        return refuse(fs, why);
    }
    if (sb->feature_ro_compat & ~EXT2_RO_COMPAT_SUPPORTED) {
        snprintf(why, sizeof why, "mounted read-only: features not supported for writing (ro_compat 0x%x)",
                 sb->feature_ro_compat & ~EXT2_RO_COMPAT_SUPPORTED);
        say(fs, why);
        fs->mnt.read_only = 1;
    }
    return 0;
}

static int read_groups(struct ext2_fs *fs)
{
    fs->nr_groups = (fs->sb.blocks_count - fs->sb.first_data_block + fs->sb.blocks_per_group - 1) /
                    fs->sb.blocks_per_group;
    size_t table = (size_t)fs->nr_groups * sizeof(struct ext2_group);
    if ((uint64_t)fs->nr_groups * fs->sb.inodes_per_group < fs->sb.inodes_count)
        return refuse(fs, "ext2 superblock not usable (more inodes than its groups hold)");
    fs->groups = malloc(table);
    if (!fs->groups)
        return -ENOMEM;
    for (size_t done = 0, blk = fs->sb.first_data_block + 1; done < table; done += fs->block_size, blk++) {
        int err;
        struct buf *b = bread(fs->cache, blk, &err);
        if (!b)
            return err;
        size_t n = table - done < fs->block_size ? table - done : fs->block_size;
        memcpy((uint8_t *)fs->groups + done, b->data, n);
        brelse(b);
    }
    uint32_t itable_blocks = (fs->sb.inodes_per_group * fs->sb.inode_size + fs->block_size - 1) / fs->block_size;
    for (uint32_t g = 0; g < fs->nr_groups; g++) {
        struct ext2_group *d = &fs->groups[g];
        if (d->block_bitmap >= fs->sb.blocks_count || d->inode_bitmap >= fs->sb.blocks_count ||
            d->inode_table + (uint64_t)itable_blocks > fs->sb.blocks_count || !d->block_bitmap ||
            !d->inode_bitmap || !d->inode_table)
            return refuse(fs, "not mounted: a group descriptor points outside the file system (run e2fsck)");
    }
    return 0;
}

static void ext2_statfs(struct mount *mnt, struct statfs *buf)
{
    struct ext2_fs *fs = (struct ext2_fs *)mnt;
    buf->f_type = EXT2_MAGIC;
    buf->f_blocks = fs->sb.blocks_count;
    buf->f_bfree = fs->sb.free_blocks_count;
    buf->f_bavail = fs->sb.free_blocks_count > fs->sb.r_blocks_count ?
                    fs->sb.free_blocks_count - fs->sb.r_blocks_count : 0;
    buf->f_files = fs->sb.inodes_count;
    buf->f_ffree = fs->sb.free_inodes_count;
}

static int sync_hook(struct mount *mnt) { return ext2_sync(mnt, 0, 1); }
static int writeback_hook(struct mount *mnt) { return ext2_sync(mnt, 0, 0); }
static int final_hook(struct mount *mnt) { return ext2_sync(mnt, 1, 1); }

struct mount *ext2_mount(struct blockdev *dev)
{
    struct ext2_fs *fs = calloc(1, sizeof *fs);
    struct bcache probe = {.dev = dev};
    if (!fs)
        return NULL;
    fs->cache = &probe;                 /* for messages until the real cache exists */
    fs->mnt.read_only = dev->read_only;
    int err = read_super(fs, dev);
    if (!err) {
        fs->block_size = 1024u << fs->sb.log_block_size;
        fs->cache = bcache_new(dev, fs->block_size, CACHE_BYTES / fs->block_size);
        err = fs->cache ? read_groups(fs) : -ENOMEM;
    }
    if (!err) {
        fs->inode_size = fs->sb.inode_size;
        uint16_t want;
        memcpy(&want, (uint8_t *)&fs->sb + SUPER_WANT_EXTRA_ISIZE, 2);
        fs->extra_isize = fs->inode_size > 128 ? (want ? want : 32) : 0;
        fs->ptrs_per_block = fs->block_size / 4;
        fs->mnt.source = dev->name;
        fs->mnt.dev = 0x800 + (uint32_t)(dev->name[2] - 'a') * 16;    /* as Linux numbers vda, vdb... */
        fs->mnt.block_size = fs->block_size;
        fs->mnt.sync = sync_hook;
        fs->mnt.final_sync = final_hook;
        fs->mnt.writeback = writeback_hook;
        fs->mnt.statfs = ext2_statfs;
        err = ext2_iget(fs, EXT2_ROOT_INO, &fs->mnt.root);
        if (!err && !IS_DIR(fs->mnt.root->mode))
            err = ext2_corrupt(fs, "the root inode is not a directory");
    }
    if (err) {
        if (fs->cache != &probe)
            free(fs->cache);
        free(fs->groups);
        free(fs);
        return NULL;
    }
    return &fs->mnt;
}

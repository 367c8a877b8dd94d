/*
 * ext2 (revision 1, as `mke2fs -t ext2` makes it): on-disk structures and the parts of
 * the driver (ext2_super.c: mount, bitmaps, sync; ext2_inode.c: inodes and file blocks;
 * ext2_dir.c: directories and the vnode operations).
 */
#ifndef PYRITE_FS_EXT2_H
#define PYRITE_FS_EXT2_H

#include <stdint.h>
#include "bcache.h"
#include "vfs.h"

#define EXT2_MAGIC 0xEF53
#define EXT2_ROOT_INO 2
#define EXT2_VALID_FS 1
#define EXT2_NDIR 12
#define EXT2_IND 12
#define EXT2_DIND 13
#define EXT2_TIND 14
#define EXT2_INDEX_FL 0x1000            /* hashed directory (dir_index) */

#define EXT2_INCOMPAT_FILETYPE 0x0002
#define EXT2_INCOMPAT_FLEX_BG  0x0200
#define EXT2_INCOMPAT_SUPPORTED (EXT2_INCOMPAT_FILETYPE | EXT2_INCOMPAT_FLEX_BG)
#define EXT2_RO_COMPAT_SPARSE_SUPER 0x0001
#define EXT2_RO_COMPAT_LARGE_FILE   0x0002
#define EXT2_RO_COMPAT_SUPPORTED (EXT2_RO_COMPAT_SPARSE_SUPER | EXT2_RO_COMPAT_LARGE_FILE)

struct ext2_super {
    uint32_t inodes_count, blocks_count, r_blocks_count, free_blocks_count, free_inodes_count;
    uint32_t first_data_block, log_block_size, log_frag_size, blocks_per_group, frags_per_group;
    uint32_t inodes_per_group, mtime, wtime;
    uint16_t mnt_count;
    int16_t max_mnt_count;
    uint16_t magic, state, errors, minor_rev_level;
    uint32_t lastcheck, checkinterval, creator_os, rev_level;
    uint16_t def_resuid, def_resgid;
    uint32_t first_ino;
    uint16_t inode_size, block_group_nr;
    uint32_t feature_compat, feature_incompat, feature_ro_compat;
    uint8_t rest[1024 - 104];
};
#define SUPER_WANT_EXTRA_ISIZE 350      /* offset of s_want_extra_isize */

struct ext2_group {
    uint32_t block_bitmap, inode_bitmap, inode_table;
    uint16_t free_blocks_count, free_inodes_count, used_dirs_count, flags;
    uint32_t exclude_bitmap;
    uint16_t block_bitmap_csum, inode_bitmap_csum, itable_unused, checksum;
};

struct ext2_inode {
    uint16_t mode, uid;
    uint32_t size, atime, ctime, mtime, dtime;
    uint16_t gid, links_count;
    uint32_t blocks, flags, osd1;
    uint32_t block[15];
    uint32_t generation, file_acl, size_high, faddr;
    uint16_t blocks_hi, file_acl_high, uid_high, gid_high, checksum_lo, reserved;
};

struct ext2_dirent {
    uint32_t inode;
    uint16_t rec_len;
    uint8_t name_len, file_type;
    char name[];
};

/* The mounted file system. */
struct ext2_fs {
    struct mount mnt;
    struct bcache *cache;
    struct ext2_super sb;
    struct ext2_group *groups;
    uint32_t nr_groups, block_size, inode_size, extra_isize, ptrs_per_block;
    int super_dirty, marked_unclean;
    struct ext2_node *live;             /* vnodes with references */
};

/* An ext2 vnode: the generic part, then the on-disk inode it mirrors. */
struct ext2_node {
    struct vnode v;
    struct ext2_inode raw;
    uint32_t goal;                      /* where the next block would best go */
    struct ext2_node *next;
};

#define EXT2_FS(node) ((struct ext2_fs *)(node)->mnt)
#define EXT2_NODE(node) ((struct ext2_node *)(node))

_Static_assert(sizeof(struct ext2_super) == 1024, "superblock layout");
_Static_assert(sizeof(struct ext2_group) == 32, "group descriptor layout");
_Static_assert(sizeof(struct ext2_inode) == 128, "inode layout");
_Static_assert(__builtin_offsetof(struct ext2_super, feature_compat) == 92, "superblock layout");

/* ext2_super.c */
int ext2_alloc_block(struct ext2_fs *fs, uint32_t goal, uint32_t *out);
void ext2_free_block(struct ext2_fs *fs, uint32_t block);
int ext2_alloc_inode(struct ext2_fs *fs, uint32_t dir_ino, int is_dir, uint32_t *out);
void ext2_free_inode(struct ext2_fs *fs, uint32_t ino, int is_dir);
void ext2_dirs_changed(struct ext2_fs *fs, uint32_t ino, int delta);
/* Note a change (the superblock says "not clean" until the final sync). */
void ext2_changed(struct ext2_fs *fs);
int ext2_corrupt(struct ext2_fs *fs, const char *what);

/* ext2_inode.c */
int ext2_iget(struct ext2_fs *fs, uint32_t ino, struct vnode **out);
int ext2_inew(struct ext2_fs *fs, uint32_t ino, uint32_t mode, struct vnode **out);
int ext2_write_inode(struct vnode *node);
/* The physical block of file block `lblock` (0: a hole), allocated when `create`. */
int ext2_bmap(struct vnode *node, uint64_t lblock, int create, uint32_t *out);
long ext2_read(struct vnode *node, void *buf, size_t n, uint64_t offset);
long ext2_write(struct vnode *node, const void *buf, size_t n, uint64_t offset);
int ext2_truncate(struct vnode *node, uint64_t size);
long ext2_readlink(struct vnode *node, char *buf, size_t n);
int ext2_fast_symlink(struct vnode *node);
void ext2_release(struct vnode *node);
int ext2_update(struct vnode *node);
int ext2_fsync(struct vnode *node);
extern const struct vnode_ops ext2_ops;

/* The ext2 file system on `dev`, mounted read-only if `dev` is or its features say so;
 * NULL with a message on the console if it is not one we can use. */
struct mount *ext2_mount(struct blockdev *dev);

#endif

/* Block devices and a small write-back block cache over one. */
#ifndef PYRITE_FS_BCACHE_H
#define PYRITE_FS_BCACHE_H

#include <stdint.h>

struct blockdev {
    uint64_t sectors;                   /* 512-byte sectors */
    int read_only;
    int (*read)(struct blockdev *, uint64_t sector, void *buf, uint32_t count);
    int (*write)(struct blockdev *, uint64_t sector, const void *buf, uint32_t count);
    int (*flush)(struct blockdev *);
    void *priv;
    char name[16];                      /* "vda", ... */
};

struct buf {
    uint64_t block;
    uint8_t *data;
    int valid, dirty, pins;
    struct buf *hash_next;
    struct buf *prev, *next;            /* the ring through bcache.lru, newest first */
};

struct bcache {
    struct blockdev *dev;
    uint32_t block_size;
    unsigned nr_bufs, nr_hash;
    struct buf *bufs;
    struct buf **hash;
    struct buf **dirty;                 /* bcache_sync's list (nr_bufs entries) */
    uint8_t *run;                       /* bcache_sync gathers adjacent dirty blocks here */
    struct buf lru;                     /* ring head: lru.next newest, lru.prev least recently used */
};

struct bcache *bcache_new(struct blockdev *dev, uint32_t block_size, unsigned nr_bufs);
/* The block's buffer, pinned, read from the device (bread) or zeroed (bnew: the caller
 * writes all of it). NULL with *err set on failure. */
struct buf *bread(struct bcache *c, uint64_t block, int *err);
struct buf *bnew(struct bcache *c, uint64_t block, int *err);
void bdirty(struct buf *b);
void brelse(struct buf *b);
/* Forget a block (freed): its buffer is dropped without being written. */
void bforget(struct bcache *c, uint64_t block);
/* Write every dirty buffer to the device, then (if `flush`) flush the device's cache. */
int bcache_sync(struct bcache *c, int flush);
/* Read or write whole blocks straight between the device and `buf`, keeping the cache
 * coherent (cached copies are used or updated). */
int bcache_read_direct(struct bcache *c, uint64_t block, uint32_t count, void *buf);
int bcache_write_direct(struct bcache *c, uint64_t block, uint32_t count, const void *buf);

#endif

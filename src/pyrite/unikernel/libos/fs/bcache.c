/* Write-back block cache: least recently used buffers are reused, dirty ones written first. */
#include <stdlib.h>
#include <string.h>
#include "bcache.h"
#include "vfs.h"

#define RUN_BYTES (64u << 10)           /* adjacent dirty blocks go to the drive as one request */

struct bcache *bcache_new(struct blockdev *dev, uint32_t block_size, unsigned nr_bufs)
{
    struct bcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->dev = dev;
    c->block_size = block_size;
    c->nr_bufs = nr_bufs;
    c->nr_hash = nr_bufs;
    c->bufs = calloc(nr_bufs, sizeof *c->bufs);
    c->hash = calloc(c->nr_hash, sizeof *c->hash);
    c->dirty = calloc(nr_bufs, sizeof *c->dirty);
    c->run = aligned_alloc(4096, RUN_BYTES);
    uint8_t *data = aligned_alloc(4096, (size_t)nr_bufs * block_size);
    if (!c->bufs || !c->hash || !c->dirty || !c->run || !data) {
        free(c->run);
        free(c->dirty);
        free(c->bufs);
        free(c->hash);
        free(data);
        free(c);
        return NULL;
    }
    c->lru.next = c->lru.prev = &c->lru;
    for (unsigned i = 0; i < nr_bufs; i++) {
        struct buf *b = &c->bufs[i];
        b->data = data + (size_t)i * block_size;
        b->next = &c->lru;
        b->prev = c->lru.prev;
        c->lru.prev->next = b;
        c->lru.prev = b;
    }
    return c;
}

static uint32_t sectors_per_block(struct bcache *c) { return c->block_size / 512; }

static struct buf **bucket(struct bcache *c, uint64_t block) { return &c->hash[block % c->nr_hash]; }

static struct buf *lookup(struct bcache *c, uint64_t block)
{
    for (struct buf *b = *bucket(c, block); b; b = b->hash_next)
        if (b->block == block && b->valid)
            return b;
    return NULL;
}

static void unhash(struct bcache *c, struct buf *b)
{
    for (struct buf **p = bucket(c, b->block); *p; p = &(*p)->hash_next)
        if (*p == b) {
            *p = b->hash_next;
            break;
        }
    b->valid = 0;
}

static int write_buf(struct bcache *c, struct buf *b)
{
    int err = c->dev->write(c->dev, b->block * sectors_per_block(c), b->data, sectors_per_block(c));
    if (!err)
        b->dirty = 0;
    return err;
}

/* b becomes the most recently used. */
static void touch(struct bcache *c, struct buf *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    b->next = c->lru.next;
    b->prev = &c->lru;
    c->lru.next->prev = b;
    c->lru.next = b;
}

/* A free buffer for `block`: the least recently used one without pins (written if dirty). */
static struct buf *take(struct bcache *c, uint64_t block, int *err)
{
    struct buf *victim = c->lru.prev;
    while (victim != &c->lru && victim->pins)
        victim = victim->prev;
    if (victim == &c->lru) {
        *err = -ENOMEM;
        return NULL;
    }
    if (victim->valid) {
        if (victim->dirty && (*err = write_buf(c, victim)))
            return NULL;
        unhash(c, victim);
    }
    victim->block = block;
    victim->dirty = 0;
    victim->hash_next = *bucket(c, block);
    *bucket(c, block) = victim;
    victim->valid = 1;
    return victim;
}

static struct buf *get(struct bcache *c, uint64_t block, int read, int *err)
{
    if ((block + 1) * sectors_per_block(c) > c->dev->sectors) {
        *err = -EIO;
        return NULL;
    }
    struct buf *b = lookup(c, block);
    if (!b) {
        b = take(c, block, err);
        if (!b)
            return NULL;
        if (read) {
            *err = c->dev->read(c->dev, block * sectors_per_block(c), b->data, sectors_per_block(c));
            if (*err) {
                unhash(c, b);
                return NULL;
            }
        }
    }
    if (!read)
        memset(b->data, 0, c->block_size);
    b->pins++;
    touch(c, b);
    return b;
}

struct buf *bread(struct bcache *c, uint64_t block, int *err) { return get(c, block, 1, err); }
struct buf *bnew(struct bcache *c, uint64_t block, int *err) { return get(c, block, 0, err); }
void bdirty(struct buf *b) { b->dirty = 1; }
void brelse(struct buf *b) { if (b) b->pins--; }

void bforget(struct bcache *c, uint64_t block)
{
    struct buf *b = lookup(c, block);
    if (b && !b->pins)
        unhash(c, b);
    else if (b)
        b->dirty = 0;
}

static int by_block(const void *a, const void *b)
{
    uint64_t x = (*(struct buf *const *)a)->block, y = (*(struct buf *const *)b)->block;
    return x < y ? -1 : x > y;
}

int bcache_sync(struct bcache *c, int flush)
{
    struct buf **dirty = c->dirty;
    unsigned n = 0;
    for (unsigned i = 0; i < c->nr_bufs; i++)
        if (c->bufs[i].valid && c->bufs[i].dirty)
            dirty[n++] = &c->bufs[i];
    qsort(dirty, n, sizeof *dirty, by_block);
    int err = 0;
    for (unsigned i = 0, count; i < n && !err; i += count) {
        for (count = 1; i + count < n && dirty[i + count]->block == dirty[i]->block + count &&
                        (count + 1) * c->block_size <= RUN_BYTES; count++)
            ;
        if (count == 1) {
            err = write_buf(c, dirty[i]);
            continue;
        }
        for (unsigned k = 0; k < count; k++)
            memcpy(c->run + k * c->block_size, dirty[i + k]->data, c->block_size);
        err = c->dev->write(c->dev, dirty[i]->block * sectors_per_block(c), c->run, count * sectors_per_block(c));
        for (unsigned k = 0; !err && k < count; k++)
            dirty[i + k]->dirty = 0;
    }
    if (!err && flush && c->dev->flush)
        err = c->dev->flush(c->dev);
    return err;
}

int bcache_read_direct(struct bcache *c, uint64_t block, uint32_t count, void *buf)
{
    int err = c->dev->read(c->dev, block * sectors_per_block(c), buf, count * sectors_per_block(c));
    for (uint32_t i = 0; !err && i < count; i++) {
        struct buf *b = lookup(c, block + i);  /* a cached copy may be newer than the disk */
        if (b && b->dirty)
            memcpy((uint8_t *)buf + (size_t)i * c->block_size, b->data, c->block_size);
    }
    return err;
}

int bcache_write_direct(struct bcache *c, uint64_t block, uint32_t count, const void *buf)
{
    for (uint32_t i = 0; i < count; i++) {
        struct buf *b = lookup(c, block + i);
        if (b) {
            memcpy(b->data, (const uint8_t *)buf + (size_t)i * c->block_size, c->block_size);
            b->dirty = 0;
        }
    }
    return c->dev->write(c->dev, block * sectors_per_block(c), buf, count * sectors_per_block(c));
}

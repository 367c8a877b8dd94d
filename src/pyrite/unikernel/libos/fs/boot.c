/*
 * The file tree at first use: a ramfs root holding the initrd's files (a newc cpio
 * archive), /dev, /tmp, and each virtio-blk drive with an ext2 file system mounted at
 * /mnt/vda, /mnt/vdb, ... (drive order); their caches are written back at exit.
 */
#include <stdlib.h>
#include <string.h>
#include <pyrite/boot.h>
#include <pyrite/power.h>
#include <pyrite/virtio.h>
#include "vfs.h"
#include "ext2.h"

static int virtio_read(struct blockdev *dev, uint64_t sector, void *buf, uint32_t count)
{
    return virtio_blk_read(dev->priv, sector, buf, count);
}

static int virtio_write(struct blockdev *dev, uint64_t sector, const void *buf, uint32_t count)
{
    return virtio_blk_write(dev->priv, sector, buf, count);
}

static int virtio_flush(struct blockdev *dev) { return virtio_blk_flush(dev->priv); }

/* The directory `name` in `dir`, made if missing (a reference). */
static struct vnode *subdir(struct vnode *dir, const char *name)
{
    struct vnode *node;
    if (dir->ops->lookup(dir, name, strlen(name), &node) == 0)
        return node;
    if (dir->ops->create(dir, name, strlen(name), S_IFDIR_ | (strcmp(name, "tmp") ? 0755 : 01777), NULL, &node))
        return NULL;
    return node;
}

static void mount_drives(struct vnode *root)
{
    int count = virtio_blk_count();
    struct vnode *mnt_dir = count > 0 ? subdir(root, "mnt") : NULL;
    for (int i = 0; mnt_dir && i < count && i < 26; i++) {
        struct virtio_blk *blk;
        struct blockdev *dev = calloc(1, sizeof *dev);
        if (!dev || virtio_blk_open((unsigned)i, &blk)) {
            free(dev);
            continue;
        }
        *dev = (struct blockdev){virtio_blk_capacity(blk), virtio_blk_read_only(blk), virtio_read,
                                 virtio_write, virtio_flush, blk, "vd"};
        dev->name[2] = (char)('a' + i);
        struct mount *mnt = ext2_mount(dev);
        struct vnode *dir = mnt ? subdir(mnt_dir, dev->name) : NULL;
        if (!dir || vfs_mount(mnt, dir))
            free(dev);                  /* not ext2 (or no room): the raw drive stays usable */
        vnode_put(dir);
    }
    vnode_put(mnt_dir);
}

/* The program's end: its descriptors close, then every cache goes to its drive. */
static void shutdown(void)
{
    fd_close_all();
    fs_sync_all();
}

struct vnode *fs_setup_root(void)
{
    struct vnode *root = ramfs_new("ramfs");
    if (!root)
        return NULL;
    vfs_mount(root->mnt, NULL);
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    if (bi->nr_modules && bi->modules[0].size)
        cpio_unpack(root, (const uint8_t *)(uintptr_t)bi->modules[0].addr, bi->modules[0].size);
    struct vnode *dev = subdir(root, "dev");
    if (dev)
        devices_populate(dev);
    vnode_put(dev);
    vnode_put(subdir(root, "tmp"));
    mount_drives(root);
    pyrite_set_poweroff_hook(shutdown);
    return root;
}

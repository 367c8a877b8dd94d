/* The library OS's file system on the host: the root a guest would get, with the initrd
 * from $FSH_CPIO and an ext2 image file from $FSH_EXT2 (",ro" after the path: read-only)
 * mounted at /mnt/vda; the console is stdout/stdin. Caches are written back at exit. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vfs.h"
#include "ext2.h"

void serial_write(const char *data, size_t n) { fwrite(data, 1, n, stdout); }
void pyrite_console_write(const char *data, size_t n) { serial_write(data, n); }
size_t serial_read(char *buf, size_t n)
{
    ssize_t r = read(0, buf, n);
    return r > 0 ? (size_t)r : 0;
}

static int file_read(struct blockdev *dev, uint64_t sector, void *buf, uint32_t count)
{
    return pread((int)(intptr_t)dev->priv, buf, count * 512ul, (off_t)sector * 512) == count * 512l ? 0 : -EIO;
}

static int file_write(struct blockdev *dev, uint64_t sector, const void *buf, uint32_t count)
{
    if (dev->read_only)
        return -EIO;
    return pwrite((int)(intptr_t)dev->priv, buf, count * 512ul, (off_t)sector * 512) == count * 512l ? 0 : -EIO;
}

static int file_flush(struct blockdev *dev) { return fsync((int)(intptr_t)dev->priv) ? -EIO : 0; }

static struct vnode *subdir(struct vnode *dir, const char *name)
{
    struct vnode *node;
    if (dir->ops->lookup(dir, name, strlen(name), &node) == 0)
        return node;
    return dir->ops->create(dir, name, strlen(name), S_IFDIR_ | 0755, NULL, &node) ? NULL : node;
}

static void at_exit(void)
{
    fd_close_all();
    fs_sync_all();
    fflush(stdout);
}

struct vnode *fs_setup_root(void)
{
    struct vnode *root = ramfs_new("ramfs");
    vfs_mount(root->mnt, NULL);
    const char *cpio = getenv("FSH_CPIO");
    if (cpio) {
        int fd = open(cpio, O_RDONLY);
        struct stat st;
        fstat(fd, &st);
        uint8_t *data = malloc((size_t)st.st_size);
        if (read(fd, data, (size_t)st.st_size) != st.st_size)
            abort();
        close(fd);
        cpio_unpack(root, data, (size_t)st.st_size);
    }
    struct vnode *dev = subdir(root, "dev");
    devices_populate(dev);
    vnode_put(dev);
    vnode_put(subdir(root, "tmp"));
    const char *image = getenv("FSH_EXT2");
    if (image) {
        char path[1024];
        snprintf(path, sizeof path, "%s", image);
        char *comma = strchr(path, ',');
        int ro = comma && !strcmp(comma, ",ro");
        if (comma)
            *comma = 0;
        int fd = open(path, ro ? O_RDONLY : O_RDWR);
        struct stat st;
        if (fd < 0 || fstat(fd, &st)) {
            perror(path);
            exit(3);
        }
        struct blockdev *bd = calloc(1, sizeof *bd);
        *bd = (struct blockdev){(uint64_t)st.st_size / 512, ro, file_read, file_write, file_flush,
                                (void *)(intptr_t)fd, "vda"};
        struct mount *mnt = ext2_mount(bd);
        struct vnode *mnt_dir = subdir(root, "mnt");
        if (mnt) {
            struct vnode *dir = subdir(mnt_dir, "vda");
            vfs_mount(mnt, dir);
            vnode_put(dir);
        }
        vnode_put(mnt_dir);
    }
    atexit(at_exit);
    return root;
}

int serial_rx_irq_enabled(void) { return 1; }
int serial_rx_irq_enable(void) { return 0; }

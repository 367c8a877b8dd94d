/*
 * fsh: a file system shell for tests. Runs the commands given as arguments through the C
 * library's POSIX and stdio calls and prints one line per result, so the same script gives
 * comparable output on the host (Linux), in a pyrite guest, and against the library OS's
 * file system compiled natively (FSH_NATIVE: calls mapped onto fs_* by a shim).
 *
 * Commands (words; each consumes its arguments):
 *   cd P | pwd | mkdir P | rmdir P | unlink P | rename A B | link A B | symlink T P |
 *   readlink P | truncate P N | write P SIZE SEED | append P TEXT | put P TEXT | show P |
 *   cat P | readat P OFF N | pwrite P OFF TEXT | stat P | lstat P | ls P | open P FLAGS |
 *   rmrf P | mkfiles DIR N SIZE | checkfiles DIR N SIZE | stdio P | hold P | mmapcheck P | fsync P | sync |
 *   bench DIR N SIZE | chmod P MODE | chown P UID:GID | access P MODE | dupcheck P | seekcheck P
 * Errors print "ERR <name>" with the errno's name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef FSH_NATIVE
#include "native_shim.h"
#endif

static const char *errname(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EROFS: return "EROFS";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EXDEV: return "EXDEV";
    case EBUSY: return "EBUSY";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ESPIPE: return "ESPIPE";
    case EMLINK: return "EMLINK";
    case EFBIG: return "EFBIG";
    }
    static char other[32];
    snprintf(other, sizeof other, "errno%d", e);
    return other;
}

static int fail(const char *what)
{
    printf("%s ERR %s\n", what, errname(errno));
    return 1;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    while (n--)
        h = (h ^ *p++) * 0x100000001B3ull;
    return h;
}

/* The bytes `write P SIZE SEED` puts at `offset` (a 64-bit LCG per 8 bytes). */
static void pattern(unsigned char *buf, size_t n, uint64_t offset, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t word = (offset + i) / 8, x = (seed + word) * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(x >> (8 * ((offset + i) % 8)));
    }
}

static int write_pattern(const char *path, long size, uint64_t seed)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    static unsigned char buf[65536];
    long done = 0;
    size_t step = 1;                    /* varied write sizes: 1, 3, 9, ... bytes, up to 64 KiB */
    while (done < size) {
        size_t n = size - done < (long)step ? (size_t)(size - done) : step;
        pattern(buf, n, (uint64_t)done, seed);
        ssize_t w = write(fd, buf, n);
        if (w != (ssize_t)n) {
            int e = errno;
            close(fd);
            errno = w < 0 ? e : ENOSPC;
            return -1;
        }
        done += (long)n;
        step = step * 3 > sizeof buf ? sizeof buf : step * 3;
    }
    return close(fd);
}

/* Content hash and size of a file, read in odd-sized pieces. */
static int hash_file(const char *path, uint64_t *hash, long *size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    static unsigned char buf[70000];
    uint64_t h = 0xCBF29CE484222325ull;
    long total = 0;
    ssize_t n;
    size_t step = 7;
    while ((n = read(fd, buf, step)) > 0) {
        h = fnv(h, buf, (size_t)n);
        total += n;
        step = step * 5 > sizeof buf ? sizeof buf : step * 5;
    }
    int e = errno;
    close(fd);
    errno = e;
    *hash = h;
    *size = total;
    return n < 0 ? -1 : 0;
}

static uint64_t pattern_hash(long size, uint64_t seed)
{
    static unsigned char buf[4096];
    uint64_t h = 0xCBF29CE484222325ull;
    for (long at = 0; at < size; at += (long)sizeof buf) {
        size_t n = size - at < (long)sizeof buf ? (size_t)(size - at) : sizeof buf;
        pattern(buf, n, (uint64_t)at, seed);
        h = fnv(h, buf, n);
    }
    return h;
}

static const char *type_name(mode_t m)
{
    return S_ISREG(m) ? "reg" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "lnk" : S_ISCHR(m) ? "chr" : "other";
}

static int cmd_stat(const char *path, int follow)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
        return fail(follow ? "stat" : "lstat");
    /* Directories: no size or link count (they differ between file systems, e.g. btrfs). */
    printf("%s %s type=%s size=%ld nlink=%ld mode=%04o blocks_ok=%d\n", follow ? "stat" : "lstat", path,
           type_name(st.st_mode), S_ISDIR(st.st_mode) ? 0L : (long)st.st_size,
           S_ISDIR(st.st_mode) ? 0L : (long)st.st_nlink,
           (unsigned)(st.st_mode & 07777), (long)st.st_blocks * 512 >= (S_ISREG(st.st_mode) ? (long)st.st_size : 0));
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmd_ls(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return fail("ls");
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char type = e->d_type == DT_DIR ? '/' : e->d_type == DT_LNK ? '@' : e->d_type == DT_REG ? ' ' : '?';
        names[n] = malloc(strlen(e->d_name) + 2);
        sprintf(names[n++], "%s%c", e->d_name, type);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
    return 0;
}

static int rmrf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    char child[1024];
    while ((e = readdir(d))) {          /* removes entries while reading the directory */
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (rmrf(child) != 0) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    return rmdir(path);
}

static int open_flags(const char *letters)
{
    int flags = 0, acc = O_RDONLY;
    for (const char *c = letters; *c; c++)
        switch (*c) {
        case 'r': acc = O_RDONLY; break;
        case 'w': acc = O_WRONLY; break;
        case 'b': acc = O_RDWR; break;
        case 'c': flags |= O_CREAT; break;
        case 'x': flags |= O_EXCL; break;
        case 't': flags |= O_TRUNC; break;
        case 'a': flags |= O_APPEND; break;
        case 'd': flags |= O_DIRECTORY; break;
        case 'n': flags |= O_NOFOLLOW; break;
        }
    return flags | acc;
}

static int put(const char *path, const char *text, int append)
{
    int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0)
        return fail(append ? "append" : "put");
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    if (w != (ssize_t)strlen(text))
        return fail(append ? "append" : "put");
    return 0;
}

static int show(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail("show");
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return fail("show");
    buf[n] = 0;
    printf("show %s: [%s]\n", path, buf);
    return 0;
}

#ifndef FSH_NATIVE
/* stdio on a file: fopen/fwrite/fseek/ftell/fread/feof/fgets/fprintf as a program uses them. */
static int stdio_check(const char *path)
{
    FILE *f = fopen(path, "w+");
    if (!f)
        return fail("stdio fopen");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "line %d\n", i);
    long end = ftell(f);
    fseek(f, 0, SEEK_SET);
    char line[64];
    int lines = 0;
    while (fgets(line, sizeof line, f))
        lines++;
    int eof = feof(f);
    fseek(f, 5, SEEK_SET);
    char word[4] = {0};
    size_t got = fread(word, 1, 3, f);
    fseek(f, 0, SEEK_END);
    size_t past = fread(word, 1, 3, f);
    for (int k = 0; k < 3; k++)
        if (word[k] == '\n')
            word[k] = '.';
    fclose(f);
    f = fopen(path, "a");
    fputs("tail\n", f);
    fclose(f);
    struct stat st;
    stat(path, &st);
    FILE *missing = fopen("no/such/file", "r");
    printf("stdio %s end=%ld lines=%d eof=%d word=%s got=%zu past=%zu size=%ld missing=%s\n", path, end, lines,
           eof, word, got, past, (long)st.st_size, missing ? "opened" : errname(errno));
    return 0;
}
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* N files of SIZE bytes: create+write+close, then open+read+close, then unlink. */
static int bench(const char *dir, long n, long size)
{
    static unsigned char buf[1 << 20];
    char path[512];
    memset(buf, 'x', (size_t)size);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/b%ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, buf, (size_t)size) != size || close(fd) != 0)
            return fail("bench write");
    }
    double t1 = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/b%ld", dir, i);
        int fd = open(path, O_RDONLY);
        if (fd < 0 || read(fd, buf, (size_t)size) != size || close(fd) != 0)
            return fail("bench read");
    }
    double t2 = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/b%ld", dir, i);
        if (unlink(path) != 0)
            return fail("bench unlink");
    }
    printf("bench %s files=%ld size=%ld write_per_s=%.0f read_per_s=%.0f\n", dir, n, size,
           n / (t1 - t0), n / (t2 - t1));
    return 0;
}

int main(int argc, char **argv)
{
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        const char *c = argv[i];
        const char *a = i + 1 < argc ? argv[i + 1] : "", *b = i + 2 < argc ? argv[i + 2] : "";
        const char *d = i + 3 < argc ? argv[i + 3] : "";
        int r = 0;
        if (!strcmp(c, "cd")) {
            r = chdir(a) ? fail("cd") : 0;
            i += 1;
        } else if (!strcmp(c, "pwd")) {
            char buf[1024];
            if (getcwd(buf, sizeof buf))
                printf("pwd %s\n", buf);
            else
                r = fail("pwd");
        } else if (!strcmp(c, "mkdir")) {
            r = mkdir(a, 0755) ? fail("mkdir") : (printf("mkdir %s\n", a), 0);
            i += 1;
        } else if (!strcmp(c, "rmdir")) {
            r = rmdir(a) ? fail("rmdir") : (printf("rmdir %s\n", a), 0);
            i += 1;
        } else if (!strcmp(c, "unlink")) {
            r = unlink(a) ? fail("unlink") : (printf("unlink %s\n", a), 0);
            i += 1;
        } else if (!strcmp(c, "rename")) {
            r = rename(a, b) ? fail("rename") : (printf("rename %s %s\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "link")) {
            r = link(a, b) ? fail("link") : (printf("link %s %s\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "symlink")) {
            r = symlink(a, b) ? fail("symlink") : (printf("symlink %s %s\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "readlink")) {
            char buf[1024];
            ssize_t n = readlink(a, buf, sizeof buf - 1);
            if (n < 0)
                r = fail("readlink");
            else
                printf("readlink %s -> %.*s\n", a, (int)n, buf);
            i += 1;
        } else if (!strcmp(c, "truncate")) {
            r = truncate(a, atol(b)) ? fail("truncate") : (printf("truncate %s %s\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "write")) {
            r = write_pattern(a, atol(b), strtoull(d, NULL, 0)) ? fail("write") : (printf("write %s %s\n", a, b), 0);
            i += 3;
        } else if (!strcmp(c, "cat")) {
            uint64_t h;
            long size;
            if (hash_file(a, &h, &size))
                r = fail("cat");
            else
                printf("cat %s size=%ld fnv=%016llx\n", a, size, (unsigned long long)h);
            i += 1;
        } else if (!strcmp(c, "expect")) {      /* expect P SIZE SEED: the file holds write's pattern */
            uint64_t h;
            long size;
            if (hash_file(a, &h, &size))
                r = fail("expect");
            else
                printf("expect %s %s\n", a, size == atol(b) && h == pattern_hash(atol(b), strtoull(d, NULL, 0))
                                                  ? "ok" : "MISMATCH");
            i += 3;
        } else if (!strcmp(c, "put") || !strcmp(c, "append")) {
            r = put(a, b, c[0] == 'a');
            i += 2;
        } else if (!strcmp(c, "show")) {
            r = show(a);
            i += 1;
        } else if (!strcmp(c, "readat")) {
            int fd = open(a, O_RDONLY);
            char buf[4096];
            long want = atol(d) < 4096 ? atol(d) : 4096;
            ssize_t n = fd < 0 ? -1 : pread(fd, buf, (size_t)want, atol(b));
            for (ssize_t k = 0; k < n; k++)     /* zeros and other bytes that do not print: '.' */
                if (buf[k] < 32 || buf[k] > 126)
                    buf[k] = '.';
            if (n < 0)
                r = fail("readat");
            else
                printf("readat %s %s %ld -> %ld [%.*s]\n", a, b, want, (long)n, (int)n, buf);
            if (fd >= 0)
                close(fd);
            i += 3;
        } else if (!strcmp(c, "pwrite")) {
            int fd = open(a, O_WRONLY);
            ssize_t n = fd < 0 ? -1 : pwrite(fd, d, strlen(d), atol(b));
            r = n < 0 ? fail("pwrite") : (printf("pwrite %s %s %ld\n", a, b, (long)n), 0);
            if (fd >= 0)
                close(fd);
            i += 3;
        } else if (!strcmp(c, "stat") || !strcmp(c, "lstat")) {
            r = cmd_stat(a, c[0] == 's');
            i += 1;
        } else if (!strcmp(c, "ls")) {
            r = cmd_ls(a);
            i += 1;
        } else if (!strcmp(c, "open")) {
            int fd = open(a, open_flags(b), 0644);
            r = fd < 0 ? fail("open") : (printf("open %s %s ok\n", a, b), close(fd), 0);
            i += 2;
        } else if (!strcmp(c, "rmrf")) {
            r = rmrf(a) ? fail("rmrf") : (printf("rmrf %s\n", a), 0);
            i += 1;
        } else if (!strcmp(c, "mkfiles") || !strcmp(c, "checkfiles")) {
            char path[512];
            long n = atol(b), bad = 0;
            for (long k = 0; k < n && !r; k++) {
                snprintf(path, sizeof path, "%s/f%ld", a, k);
                if (c[0] == 'm') {
                    r = write_pattern(path, atol(d), (uint64_t)k) ? fail("mkfiles") : 0;
                } else {
                    uint64_t h;
                    long size;
                    r = hash_file(path, &h, &size) ? fail("checkfiles") : 0;
                    bad += !r && (size != atol(d) || h != pattern_hash(atol(d), (uint64_t)k));
                }
            }
            if (!r)
                printf("%s %s %s %s%s\n", c, a, b, d, bad ? " MISMATCH" : "");
            i += 3;
        } else if (!strcmp(c, "stdio")) {
#ifndef FSH_NATIVE
            r = stdio_check(a);
#endif
            i += 1;
        } else if (!strcmp(c, "mmapcheck")) {   /* MAP_PRIVATE of a file: its bytes, a private copy */
            int fd = open(a, O_RDONLY);
            struct stat st;
            if (fd < 0 || fstat(fd, &st)) {
                r = fail("mmapcheck");
            } else {
                size_t size = (size_t)st.st_size, len = size + 100;
                unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
                unsigned char *at4k = size > 4096 ? mmap(NULL, size - 4096, PROT_READ, MAP_PRIVATE, fd, 4096) : NULL;
                if (m == MAP_FAILED || at4k == MAP_FAILED) {
                    r = fail("mmapcheck");
                } else {
                    int tail_zero = 1, same = !at4k || !memcmp(at4k, m + 4096, size - 4096);
                    for (size_t k = size; k < len; k++)
                        tail_zero &= m[k] == 0;
                    uint64_t h = fnv(0xCBF29CE484222325ull, m, size);
                    unsigned char first = 0;
                    m[0] ^= 0xFF;               /* a private change: the file keeps its byte */
                    long got = pread(fd, &first, 1, 0);
                    printf("mmapcheck %s size=%zu fnv=%016llx tail_zero=%d offset_same=%d file_kept=%d\n", a, size,
                           (unsigned long long)h, tail_zero, same, got == 1 && first == (unsigned char)(m[0] ^ 0xFF));
                    munmap(m, len);
                }
                close(fd);
            }
            i += 1;
        } else if (!strcmp(c, "hold")) {        /* open P and keep it open until the end */
            r = open(a, O_RDWR) < 0 ? fail("hold") : (printf("hold %s\n", a), 0);
            i += 1;
        } else if (!strcmp(c, "fsync")) {
            int fd = open(a, O_RDONLY);
            r = fd < 0 || fsync(fd) ? fail("fsync") : (printf("fsync %s\n", a), 0);
            if (fd >= 0)
                close(fd);
            i += 1;
        } else if (!strcmp(c, "sync")) {
            sync();
            printf("sync\n");
        } else if (!strcmp(c, "bench")) {
            r = bench(a, atol(b), atol(d));
            i += 3;
        } else if (!strcmp(c, "chmod")) {
            r = chmod(a, (mode_t)strtoul(b, NULL, 8)) ? fail("chmod") : (printf("chmod %s %s\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "chown")) {       /* chown P UID:GID, then print the owner */
            struct stat st;
            unsigned uid = (unsigned)atoi(b), gid = strchr(b, ':') ? (unsigned)atoi(strchr(b, ':') + 1) : uid;
            if (chown(a, uid, gid) || stat(a, &st))
                r = fail("chown");
            else
                printf("chown %s -> %u:%u\n", a, (unsigned)st.st_uid, (unsigned)st.st_gid);
            i += 2;
        } else if (!strcmp(c, "access")) {
            int mode = strchr(b, 'w') ? W_OK : strchr(b, 'x') ? X_OK : strchr(b, 'r') ? R_OK : F_OK;
            r = access(a, mode) ? fail("access") : (printf("access %s %s ok\n", a, b), 0);
            i += 2;
        } else if (!strcmp(c, "seekcheck")) {   /* lseek and reading past the end */
            int fd = open(a, O_RDWR | O_CREAT | O_TRUNC, 0644);
            char buf[16];
            long w = write(fd, "0123456789", 10);
            long end = lseek(fd, 0, SEEK_END), past = lseek(fd, 100, SEEK_SET);
            long r1 = read(fd, buf, sizeof buf);
            long neg = lseek(fd, -1, SEEK_SET), neg_errno = errno;
            long hole = write(fd, "X", 1), size = lseek(fd, 0, SEEK_END);
            lseek(fd, 50, SEEK_SET);
            long r2 = read(fd, buf, 4);
            long zeros = r2 == 4 && !buf[0] && !buf[3];
            close(fd);
            printf("seekcheck w=%ld end=%ld past=%ld read_past=%ld neg=%ld %s hole=%ld size=%ld zeros=%ld\n", w,
                   end, past, r1, neg, errname((int)neg_errno), hole, size, zeros);
            i += 1;
        } else if (!strcmp(c, "dupcheck")) {    /* dup'd descriptors share the offset; O_APPEND */
            int fd = open(a, O_RDWR | O_CREAT | O_TRUNC, 0644);
            int fd2 = dup(fd);
            long w1 = write(fd, "abc", 3), w2 = write(fd2, "def", 3);
            long off = lseek(fd, 0, SEEK_CUR);
            close(fd);
            close(fd2);
            int fa = open(a, O_WRONLY | O_APPEND);
            lseek(fa, 0, SEEK_SET);
            long w3 = write(fa, "gh", 2);
            long off2 = lseek(fa, 0, SEEK_CUR);
            int fl = fcntl(fa, F_GETFL) & O_APPEND ? 1 : 0;
            close(fa);
            long bad = close(fa) == 0 ? 0 : errno == EBADF;
            printf("dupcheck w=%ld,%ld,%ld off=%ld off_append=%ld append_flag=%d badclose=%ld\n", w1, w2, w3, off,
                   off2, fl, bad);
            i += 1;
        } else {
            printf("unknown command %s\n", c);
            return 2;
        }
        failures += r;
    }
    printf("fsh done failures=%d\n", failures);
    return 0;
}

/* Anonymous memory reads as zero however it is handed out: fresh (never used since boot,
 * not written by the library OS), reused after munmap, grown by brk and mremap. Prints one
 * "name=ok" or "name=dirty at N" line per case. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define MIB (1024 * 1024)

static void check(const char *name, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            printf("%s=dirty at %zu\n", name, i);
            return;
        }
    printf("%s=ok\n", name);
}

int main(void)
{
    unsigned char *a = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check("fresh", a, 8 * MIB);
    memset(a, 0xAB, 8 * MIB);
    munmap(a, 8 * MIB);
    unsigned char *b = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check("reused", b, 8 * MIB);
    memset(b, 0xCD, 8 * MIB);
    unsigned char *c = mremap(b, 8 * MIB, 12 * MIB, MREMAP_MAYMOVE);
    check("mremap_tail", c + 8 * MIB, 4 * MIB);
    printf("mremap_kept=%s\n", c[0] == 0xCD && c[8 * MIB - 1] == 0xCD ? "ok" : "lost");
    /* The brk system call itself (musl's sbrk/brk refuse to move the break). From a page
     * boundary: on Linux too, the rest of a partly used page keeps its bytes. */
    unsigned long cur = (unsigned long)syscall(SYS_brk, 0), page = (unsigned long)sysconf(_SC_PAGESIZE);
    unsigned long brk0 = (cur + page - 1) / page * page;
    if ((unsigned long)syscall(SYS_brk, brk0 + 2 * MIB) != brk0 + 2 * MIB) {
        printf("brk_regrown=brk failed\n");
        return 1;
    }
    memset((void *)brk0, 0xEF, 2 * MIB);
    syscall(SYS_brk, brk0);
    syscall(SYS_brk, brk0 + 2 * MIB);
    check("brk_regrown", (unsigned char *)brk0, 2 * MIB);
    return 0;
}

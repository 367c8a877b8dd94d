/* Runs CPUID (at CPL 3, where the application runs) for each "leaf[.subleaf]" word of the
 * command line (hex) and prints one line per query:
 *   cpuid <leaf hex>.<subleaf hex> <eax> <ebx> <ecx> <edx>   (8 hex digits each)
 * then "cpuid done" and exit status 0; status 2 for a word that is not hex. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pyrite/arch.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *end;
        uint32_t leaf = (uint32_t)strtoul(argv[i], &end, 16), subleaf = 0;
        if (end == argv[i] || (*end && *end != '.'))
            return 2;
        if (*end == '.') {
            const char *sub = end + 1;
            subleaf = (uint32_t)strtoul(sub, &end, 16);
            if (end == sub || *end)
                return 2;
        }
        uint32_t r[4];
        cpuid(leaf, subleaf, r);
        printf("cpuid %x.%x %08x %08x %08x %08x\n", leaf, subleaf, r[0], r[1], r[2], r[3]);
    }
    puts("cpuid done");
    return 0;
}

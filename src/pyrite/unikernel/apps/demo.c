/* pyrite's built-in demo guest (`pyrite run` without an image): says hello and what it
 * runs on, then exits with status 0. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/clock.h>

static unsigned current_cpl(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

int main(int argc, char **argv)
{
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    uint64_t ram = 0;
    for (unsigned i = 0; i < bi->nr_mem; i++)
        if (bi->mem[i].type == PYRITE_MEM_RAM)
            ram += bi->mem[i].size;
    const char *cpu_source;
    int cpus = pyrite_cpu_count(&cpu_source);

    printf("Hello from pyrite's demo unikernel (library OS %s).\n", pyrite_libos_version);
    printf("  booted by   %s\n", bi->protocol_name);
    printf("  CPUs        %d\n", cpus);
    printf("  memory      %lu MiB\n", (unsigned long)(ram >> 20));
    printf("  running at  CPL %u\n", current_cpl());
    printf("  TSC         %lu MHz (%s)\n", pyrite_tsc_hz() / 1000000, pyrite_tsc_source());
    if (argc > 1) {
        printf("  arguments  ");
        for (int i = 1; i < argc; i++)
            printf(" %s", argv[i]);
        putchar('\n');
    }
    puts("Build your own: pyrite unikernel build app.c -o app.img && pyrite run app.img");
    return 0;
}

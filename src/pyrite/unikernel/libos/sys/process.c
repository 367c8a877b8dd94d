/* The one process: its end, identity, limits and thread pointer. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/clock.h>
#include <pyrite/power.h>
#include "sys.h"
#include "../libos_internal.h"

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004
#define MSR_FS_BASE 0xC0000100
#define MSR_GS_BASE 0xC0000101

__attribute__((noreturn)) void sys_exit_group(int status)
{
    pyrite_poweroff(status & 0xFF);
}

long sys_uname(struct utsname *u)
{
    memset(u, 0, sizeof *u);
    strcpy(u->sysname, "pyrite");
    strcpy(u->nodename, "pyrite");
    strncpy(u->release, pyrite_libos_version, sizeof u->release - 1);
    strcpy(u->version, "pyrite library OS (musl C library)");
    strcpy(u->machine, "x86_64");
    return 0;
}

/* wrmsr is emulated for CPL 3 by arch/traps.S; the values are kept to answer ARCH_GET_*. */
static uint64_t fs_base, gs_base;

long sys_arch_prctl(int code, unsigned long addr)
{
    switch (code) {
    case ARCH_SET_FS:
    case ARCH_SET_GS:
        if (addr >> 47)
            return -EPERM;                      /* not a canonical user address */
        __asm__ volatile("wrmsr" : : "c"(code == ARCH_SET_FS ? MSR_FS_BASE : MSR_GS_BASE),
                         "a"((uint32_t)addr), "d"((uint32_t)(addr >> 32)) : "memory");
        *(code == ARCH_SET_FS ? &fs_base : &gs_base) = addr;
        return 0;
    case ARCH_GET_FS:
    case ARCH_GET_GS:
        *(uint64_t *)addr = code == ARCH_GET_FS ? fs_base : gs_base;
        return 0;
    }
    return -EINVAL;
}

long sys_set_tid_address(int *tidptr) { return PYRITE_PID; }

static void limit_of(int resource, struct rlimit *r)
{
    r->rlim_cur = r->rlim_max = RLIM_INFINITY;
    if (resource == RLIMIT_STACK)
        r->rlim_cur = r->rlim_max = pyrite_stack_size();
    else if (resource == RLIMIT_NOFILE)
        r->rlim_cur = r->rlim_max = 1024;
}

long sys_prlimit64(pid_t pid, int resource, const struct rlimit *new_limit, struct rlimit *old)
{
    if (pid != 0 && pid != PYRITE_PID)
        return -ESRCH;
    if (resource < 0 || resource >= RLIM_NLIMITS)
        return -EINVAL;
    if (old)
        limit_of(resource, old);
    return new_limit ? -EPERM : 0;              /* limits are what the VM has */
}

long sys_getrlimit(int resource, struct rlimit *limit) { return sys_prlimit64(0, resource, NULL, limit); }

/* The one process has run since boot: its user time is the monotonic time. */
long sys_getrusage(int who, struct rusage *usage)
{
    if (who != RUSAGE_SELF && who != RUSAGE_CHILDREN && who != RUSAGE_THREAD)
        return -EINVAL;
    memset(usage, 0, sizeof *usage);
    if (who != RUSAGE_CHILDREN) {
        uint64_t us = pyrite_monotonic_ns() / 1000;
        usage->ru_utime.tv_sec = (time_t)(us / 1000000);
        usage->ru_utime.tv_usec = (suseconds_t)(us % 1000000);
    }
    return 0;
}

/* times(): clock ticks (AT_CLKTCK, 100 Hz) since boot, all of them the process's user time. */
long sys_times(struct tms *buf)
{
    long ticks = (long)(pyrite_monotonic_ns() / 10000000ull);
    if (buf)
        *buf = (struct tms){.tms_utime = ticks};
    return ticks;
}

long sys_sysinfo(struct sysinfo *info)
{
    memset(info, 0, sizeof *info);
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    for (unsigned i = 0; i < bi->nr_mem; i++)
        if (bi->mem[i].type == PYRITE_MEM_RAM)
            info->totalram += bi->mem[i].size;
    info->freeram = pyrite_memory_free();
    info->uptime = (long)(pyrite_monotonic_ns() / 1000000000ull);
    info->procs = 1;
    info->mem_unit = 1;
    return 0;
}

long sys_sched_getaffinity(pid_t pid, size_t size, void *mask)
{
    if (pid != 0 && pid != PYRITE_PID)
        return -ESRCH;
    if (size < 8)
        return -EINVAL;
    memset(mask, 0, size);
    *(uint8_t *)mask = 1;                       /* the application runs on CPU 0 */
    return 8;
}

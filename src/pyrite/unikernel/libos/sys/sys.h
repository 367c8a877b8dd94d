/* System calls implemented by the library OS (the files of libos/sys): one function per Linux
 * x86-64 system call, sys_<name>, with its own arguments, returning the result or -errno.
 * The dispatcher is libos/sys/syscall.c; file system calls are fs_<name> (libos/fs/fs.h). */
#ifndef PYRITE_SYS_H
#define PYRITE_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>

struct timeval;
struct utsname;
struct rlimit;
struct sysinfo;
struct rusage;
struct tms;

/* memory.c */
long sys_brk(uintptr_t addr);
long sys_mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, off_t offset);
long sys_munmap(uintptr_t addr, size_t len);
long sys_mremap(uintptr_t old, size_t old_len, size_t new_len, int flags, uintptr_t new_addr);
long sys_mprotect(uintptr_t addr, size_t len, int prot);
long sys_madvise(uintptr_t addr, size_t len, int advice);
long sys_msync(uintptr_t addr, size_t len, int flags);

/* time.c */
long sys_clock_gettime(clockid_t clock, struct timespec *ts);
long sys_clock_getres(clockid_t clock, struct timespec *ts);
long sys_gettimeofday(struct timeval *tv, void *tz);
long sys_time(time_t *t);
long sys_nanosleep(const struct timespec *req, struct timespec *rem);
long sys_clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem);

/* random.c */
long sys_getrandom(void *buf, size_t n, unsigned flags);

/* process.c */
__attribute__((noreturn)) void sys_exit_group(int status);
long sys_uname(struct utsname *u);
long sys_arch_prctl(int code, unsigned long addr);
long sys_set_tid_address(int *tidptr);
long sys_prlimit64(pid_t pid, int resource, const struct rlimit *new_limit, struct rlimit *old);
long sys_getrlimit(int resource, struct rlimit *limit);
long sys_sysinfo(struct sysinfo *info);
long sys_getrusage(int who, struct rusage *usage);
long sys_times(struct tms *buf);
long sys_sched_getaffinity(pid_t pid, size_t size, void *mask);

/* signal.c */
long sys_rt_sigaction(int sig, const void *act, void *old, size_t sigsetsize);
long sys_rt_sigprocmask(int how, const uint64_t *set, uint64_t *old, size_t sigsetsize);
long sys_rt_sigpending(uint64_t *set, size_t sigsetsize);
long sys_kill(pid_t pid, int sig);
long sys_tgkill(pid_t tgid, pid_t tid, int sig);

#define PYRITE_PID 1                  /* the one process (and its one thread) */

#endif

/* The C library on the library OS's system calls: prints `name=value` lines that
 * tests/kvm/test_libc.py checks (memory, time, random, identity, errno values of the calls a
 * unikernel refuses, signals, TLS, constructors, setjmp). argv[1] picks a final act:
 * "abort", "raise-term", "unknown-syscall", or nothing (exit 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Prints "name=result errno=E" with the call made first (printf's arguments have no order). */
#define CALL(name, expr) do { errno = 0; long result_ = (long)(expr); int errno_ = errno; \
        printf(name "=%ld errno=%d\n", result_, errno_); } while (0)

static int constructed;
__attribute__((constructor)) static void construct(void) { constructed = 42; }

static _Thread_local int tls_counter = 7;
static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }
static void *thread_main(void *arg) { return arg; }

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void memory(void)
{
    size_t n = 3 << 20;
    unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap_ok=%d\n", p != MAP_FAILED && ((uintptr_t)p & 4095) == 0);
    printf("mmap_zeroed=%d\n", all_zero(p, n));
    memset(p, 0xAB, n);
    printf("munmap=%d\n", munmap(p, n));
    unsigned char *q = mmap(p, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("mmap_fixed_same=%d reused_zeroed=%d\n", q == p, all_zero(q, n));
    q[0] = 1;
    unsigned char *r = mremap(q, n, 2 * n, MREMAP_MAYMOVE);
    printf("mremap_kept=%d grown_zeroed=%d\n", r != MAP_FAILED && r[0] == 1, r != MAP_FAILED && all_zero(r + n, n));
    munmap(r, 2 * n);
    CALL("mmap_file", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 0, 0) == MAP_FAILED);
    CALL("mprotect_rw", mprotect(r, 4096, PROT_READ | PROT_WRITE));
    CALL("mprotect_ro", mprotect(r, 4096, PROT_READ));
    CALL("msync", msync(r, 4096, MS_SYNC));
    char *before = (char *)syscall(SYS_brk, 0);      /* musl's brk() and sbrk(n) always fail */
    char *after = (char *)syscall(SYS_brk, before + (1 << 16));
    printf("brk_grows=%d zeroed=%d\n", after == before + (1 << 16), all_zero((unsigned char *)before, 1 << 16));
    char *big = malloc(50 << 20);
    printf("malloc_big=%d\n", big != NULL);
    free(big);
    CALL("malloc_too_big", malloc((size_t)1 << 40) == NULL);
}

static void identity_and_time(void)
{
    struct utsname u;
    uname(&u);
    printf("uname=%s %s\n", u.sysname, u.machine);
    printf("pid=%d ppid=%d uid=%d\n", getpid(), getppid(), getuid());
    printf("time=%lld\n", (long long)time(NULL));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("monotonic_ok=%d\n", b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
    CALL("clock_bad", clock_gettime(12345, &a));
    struct rusage usage;
    CALL("getrusage", getrusage(RUSAGE_SELF, &usage));
    printf("user_time_ok=%d\n", usage.ru_utime.tv_sec > 0 || usage.ru_utime.tv_usec > 0);
    struct tms tms;
    clock_t ticks = times(&tms);
    printf("times_ok=%d\n", ticks >= 0 && tms.tms_utime == ticks && tms.tms_cutime == 0);
    unsigned char r1[32], r2[32];
    ssize_t n1 = getrandom(r1, sizeof r1, 0), n2 = getrandom(r2, sizeof r2, 0);
    printf("getrandom=%zd %zd differ=%d\n", n1, n2, memcmp(r1, r2, sizeof r1) != 0);
}

static void refused(void)
{
    CALL("fork", fork());
    CALL("socket", socket(AF_INET, SOCK_STREAM, 0));
    CALL("setuid", setuid(1000));
    CALL("execve", execve("/bin/sh", (char *[]){"sh", NULL}, environ));
    pthread_t t;
    printf("pthread_create=%d\n", pthread_create(&t, NULL, thread_main, NULL));
    CALL("fopen_missing", fopen("/nonexistent", "r") != NULL);
}

static void signals_tls_jumps(void)
{
    signal(SIGUSR1, on_signal);
    int raised = raise(SIGUSR1);
    printf("raise=%d got=%d\n", raised, (int)got_signal);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    signal(SIGUSR2, on_signal);
    sigprocmask(SIG_BLOCK, &set, NULL);
    got_signal = 0;
    kill(getpid(), SIGUSR2);
    int while_blocked = got_signal;
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf("blocked_then_delivered=%d %d\n", while_blocked, (int)got_signal);
    signal(SIGCHLD, SIG_DFL);
    printf("ignored=%d\n", raise(SIGCHLD));
    int tls_before = tls_counter++;
    printf("tls=%d %d\n", tls_before, tls_counter);
    printf("constructed=%d\n", constructed);
    jmp_buf env;
    volatile int jumps = 0;
    if (setjmp(env) < 3)
        longjmp(env, ++jumps + 1);
    printf("longjmp=%d\n", jumps);
}

int main(int argc, char **argv)
{
    memory();
    identity_and_time();
    refused();
    signals_tls_jumps();
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "abort") == 0)
        abort();
    if (argc > 1 && strcmp(argv[1], "raise-term") == 0)
        raise(SIGTERM);
    if (argc > 1 && strcmp(argv[1], "unknown-syscall") == 0) {
        CALL("unknown", syscall(SYS_io_setup, 1, NULL));
        CALL("unknown_again", syscall(SYS_io_setup, 1, NULL));
    }
    return 0;
}

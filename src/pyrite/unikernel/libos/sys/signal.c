/*
 * Signals within the one thread. There is no other process or thread to send them and no
 * asynchronous source (no timers, no terminal), so a signal is always raised by the
 * program itself (raise, abort, kill(getpid(), ...)) and delivered synchronously: its
 * handler is called before kill/tgkill returns, or when a mask that blocked it is lifted.
 * A signal without a handler takes Linux's default action: ignored (SIGCHLD, SIGCONT,
 * SIGURG, SIGWINCH) or the end of the VM with status 128 + the signal's number, after a
 * line on the console naming it (abort() ends with 134).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <pyrite/power.h>
#include <pyrite/serial.h>
#include "sys.h"

#define NSIG_MAX 64

struct k_sigaction {                    /* the kernel's layout (musl's ksigaction.h) */
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static struct k_sigaction actions[NSIG_MAX + 1];
static uint64_t blocked, pending;

static uint64_t bit(int sig) { return 1ull << (sig - 1); }

static const char *const names[] = {
    [SIGHUP] = "SIGHUP", [SIGINT] = "SIGINT", [SIGQUIT] = "SIGQUIT", [SIGILL] = "SIGILL",
    [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS", [SIGFPE] = "SIGFPE",
    [SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
    [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM",
};

static __attribute__((noreturn)) void terminate(int sig)
{
    char line[64] = "pyrite: terminated by signal ";
    size_t n = strlen(line);
    if (sig >= 10)
        line[n++] = (char)('0' + sig / 10);
    line[n++] = (char)('0' + sig % 10);
    const char *name = (unsigned)sig < sizeof names / sizeof names[0] ? names[sig] : NULL;
    if (name) {
        line[n++] = ' ';
        line[n++] = '(';
        strcpy(line + n, name);
        n += strlen(name);
        line[n++] = ')';
    }
    line[n++] = '\n';
    serial_write(line, n);
    pyrite_poweroff(128 + sig);
}

static int ignored_by_default(int sig)
{
    return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

static void deliver(int sig)
{
    struct k_sigaction *a = &actions[sig];
    void (*handler)(int) = a->handler;
    if (handler == SIG_IGN || (handler == SIG_DFL && ignored_by_default(sig)))
        return;
    if (handler == SIG_DFL)
        terminate(sig);
    uint64_t saved = blocked;
    blocked |= a->mask | ((a->flags & SA_NODEFER) ? 0 : bit(sig));
    if (a->flags & SA_RESETHAND)
        a->handler = SIG_DFL;
    if (a->flags & SA_SIGINFO) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = sig;
        info.si_code = SI_TKILL;
        info.si_pid = PYRITE_PID;
        ((void (*)(int, siginfo_t *, void *))handler)(sig, &info, NULL);
    } else {
        handler(sig);
    }
    blocked = saved;
}

static void deliver_pending(void)
{
    uint64_t ready;
    while ((ready = pending & ~blocked)) {
        int sig = __builtin_ctzll(ready) + 1;
        pending &= ~bit(sig);
        deliver(sig);
    }
}

static long raise_signal(int sig)
{
    if (sig < 0 || sig > NSIG_MAX)
        return -EINVAL;
    if (sig == 0)
        return 0;                               /* only a check that the target exists */
    if (sig == SIGKILL || sig == SIGSTOP)
        terminate(sig);
    pending |= bit(sig);
    deliver_pending();
    return 0;
}

long sys_rt_sigaction(int sig, const void *act, void *old, size_t sigsetsize)
{
    if (sig < 1 || sig > NSIG_MAX || sigsetsize != 8)
        return -EINVAL;
    if (act && (sig == SIGKILL || sig == SIGSTOP))
        return -EINVAL;
    if (old)
        memcpy(old, &actions[sig], sizeof actions[sig]);
    if (act)
        memcpy(&actions[sig], act, sizeof actions[sig]);
    return 0;
}

long sys_rt_sigprocmask(int how, const uint64_t *set, uint64_t *old, size_t sigsetsize)
{
    if (sigsetsize != 8)
        return -EINVAL;
    uint64_t previous = blocked;
    if (set) {
        uint64_t s = *set & ~(bit(SIGKILL) | bit(SIGSTOP));
        switch (how) {
        case SIG_BLOCK: blocked |= s; break;
        case SIG_UNBLOCK: blocked &= ~s; break;
        case SIG_SETMASK: blocked = s; break;
        default: return -EINVAL;
        }
    }
    if (old)
        *old = previous;
    deliver_pending();
    return 0;
}

long sys_rt_sigpending(uint64_t *set, size_t sigsetsize)
{
    if (sigsetsize > 8)
        return -EINVAL;
    memcpy(set, &pending, sigsetsize);
    return 0;
}

long sys_kill(pid_t pid, int sig)
{
    if (pid != PYRITE_PID && pid != 0 && pid != -1 && pid != -PYRITE_PID)
        return -ESRCH;
    return raise_signal(sig);
}

long sys_tgkill(pid_t tgid, pid_t tid, int sig)
{
    if ((tgid != PYRITE_PID && tgid != -1) || tid != PYRITE_PID)
        return -ESRCH;
    return raise_signal(sig);
}

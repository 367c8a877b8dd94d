/* pyrite: musl's system calls are plain calls into the library OS (libos/sys/syscall.c),
 * which runs at the same privilege in the same address space: no `syscall` instruction,
 * no mode switch. Replaces musl's arch/x86_64/syscall_arch.h (no vDSO either). */
#define __SYSCALL_LL_E(x) (x)
#define __SYSCALL_LL_O(x) (x)

long __pyrite_syscall(long n, long a, long b, long c, long d, long e, long f);

static __inline long __syscall0(long n) { return __pyrite_syscall(n, 0, 0, 0, 0, 0, 0); }
static __inline long __syscall1(long n, long a) { return __pyrite_syscall(n, a, 0, 0, 0, 0, 0); }
static __inline long __syscall2(long n, long a, long b) { return __pyrite_syscall(n, a, b, 0, 0, 0, 0); }
static __inline long __syscall3(long n, long a, long b, long c) { return __pyrite_syscall(n, a, b, c, 0, 0, 0); }
static __inline long __syscall4(long n, long a, long b, long c, long d) { return __pyrite_syscall(n, a, b, c, d, 0, 0); }
static __inline long __syscall5(long n, long a, long b, long c, long d, long e) { return __pyrite_syscall(n, a, b, c, d, e, 0); }
static __inline long __syscall6(long n, long a, long b, long c, long d, long e, long f) { return __pyrite_syscall(n, a, b, c, d, e, f); }

#define IPC_64 0

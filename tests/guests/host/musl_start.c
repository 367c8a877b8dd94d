/* Runs a program built against pyrite's musl (whose system calls are calls of
 * __pyrite_syscall) as a plain Linux process, so that tests compare a guest with the same
 * program and the same C library on the host: here __pyrite_syscall is the `syscall`
 * instruction, and _start hands the initial stack to musl's __libc_start_main. */
long __pyrite_syscall(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

int main(int argc, char **argv, char **envp);
int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv,
                      void (*init)(void), void (*fini)(void), void (*ldso)(void));

__attribute__((used, noreturn)) void host_start(long *sp)
{
    __libc_start_main(main, (int)sp[0], (char **)(sp + 1), 0, 0, 0);
    __builtin_unreachable();
}

__asm__(".text\n.globl _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall host_start\n\thlt\n");

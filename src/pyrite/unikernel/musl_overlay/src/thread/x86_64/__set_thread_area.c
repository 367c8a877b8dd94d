/* pyrite: the thread pointer is FS's base, set with arch_prctl(ARCH_SET_FS) (the library
 * OS writes MSR_FS_BASE). Replaces musl's __set_thread_area.s, which used `syscall`. */
#include "pthread_impl.h"

#define ARCH_SET_FS 0x1002

int __set_thread_area(void *p)
{
	return __syscall(SYS_arch_prctl, ARCH_SET_FS, p);
}

/* Escape attempts from inside a jail, run as the jailed program (named firecracker-probe so
 * that Firecracker's jailer accepts it too). Prints one "name=value" line per attempt, the
 * value an errno name (or a number), then "done". argv ends with: HOST_PATH HOST_PID.
 *   open_host, open_dotdot   open(HOST_PATH), open("../../../.." HOST_PATH)
 *   proc                     open("/proc/self/status")
 *   kill_host                kill(HOST_PID, 0): is a process outside the pid namespace visible
 *   write_exec               open the jail's root-owned copy of this program for writing
 *   chroot_escape            mkdir + chroot into it (the classic chroot break-out needs this)
 *   setuid0, mount, mknod    become root again, mount a tmpfs, make a block device node
 *   capeff                   the effective capability set (capget)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/capability.h>

static const char *err(int ok)
{
    static char buf[32];
    if (ok)
        return "OK";
    switch (errno) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    default: snprintf(buf, sizeof buf, "%d", errno); return buf;
    }
}

int main(int argc, char **argv)
{
    const char *host_path = argv[argc - 2];
    int host_pid = atoi(argv[argc - 1]);
    char dotdot[4096];
    snprintf(dotdot, sizeof dotdot, "../../../../../../../..%s", host_path);

    printf("uid=%d\neuid=%d\ngid=%d\npid=%d\n", getuid(), geteuid(), getgid(), getpid());
    printf("open_host=%s\n", err(open(host_path, O_RDONLY) >= 0));
    printf("open_dotdot=%s\n", err(open(dotdot, O_RDONLY) >= 0));
    printf("proc=%s\n", err(open("/proc/self/status", O_RDONLY) >= 0));
    printf("kill_host=%s\n", err(kill(host_pid, 0) == 0));
    printf("write_exec=%s\n", err(open("/firecracker-probe", O_WRONLY) >= 0));
    mkdir("/escape", 0700);
    printf("chroot_escape=%s\n", err(chroot("/escape") == 0));
    printf("setuid0=%s\n", err(setuid(0) == 0));
    printf("mount=%s\n", err(mount("none", "/escape", "tmpfs", 0, NULL) == 0));
    printf("mknod=%s\n", err(mknod("/escape/sda", S_IFBLK | 0600, makedev(8, 0)) == 0));
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { 0 };
    syscall(SYS_capget, &hdr, data);
    printf("capeff=%llx\n", (unsigned long long)data[1].effective << 32 | data[0].effective);
    printf("done\n");
    fflush(stdout);
    return 0;
}

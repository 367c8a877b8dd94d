/*
 * spawn_rusage TIMEOUT_S OUTPUT_FILE COMMAND [ARG...]
 *
 * Runs COMMAND with stdin from /dev/null and stdout+stderr into OUTPUT_FILE,
 * waits for it with wait4() and prints one line on stdout:
 *   wall_ns=N user_us=N sys_us=N maxrss_kib=N exit=N signal=N timed_out=0|1
 * COMMAND is killed (SIGKILL) after TIMEOUT_S seconds.
 *
 * Why not os.wait4() in Python: exec() records the replaced address space's
 * high-water RSS in the new program's ru_maxrss, so any child of a ~10 MiB
 * Python process reports a peak RSS of at least ~10 MiB. Spawned from this
 * small process, the command's ru_maxrss is its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile pid_t child_pid;
static volatile sig_atomic_t timed_out;

static void on_alarm(int signo)
{
	(void)signo;
	timed_out = 1;
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
}

static long long timeval_us(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s TIMEOUT_S OUTPUT_FILE COMMAND [ARG...]\n", argv[0]);
		return 2;
	}
	char *end;
	unsigned long timeout_s = strtoul(argv[1], &end, 10);
	if (*end != '\0' || timeout_s == 0) {
		fprintf(stderr, "spawn_rusage: TIMEOUT_S %s is not a positive integer\n", argv[1]);
		return 2;
	}

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 1, argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&actions, 1, 2);

	struct sigaction alarm_action;
	memset(&alarm_action, 0, sizeof alarm_action);
	alarm_action.sa_handler = on_alarm;
	sigaction(SIGALRM, &alarm_action, NULL);

	struct timespec start, stop;
	clock_gettime(CLOCK_MONOTONIC, &start);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[3], &actions, NULL, &argv[3], environ);
	if (err != 0) {
		fprintf(stderr, "spawn_rusage: cannot run %s: %s\n", argv[3], strerror(err));
		return 127;
	}
	child_pid = pid;
	alarm(timeout_s);

	int status;
	struct rusage usage;
	while (wait4(pid, &status, 0, &usage) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "spawn_rusage: wait4 %d: %s\n", pid, strerror(errno));
			return 2;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &stop);
	alarm(0);

	long long wall_ns = (long long)(stop.tv_sec - start.tv_sec) * 1000000000LL
			    + (stop.tv_nsec - start.tv_nsec);
	printf("wall_ns=%lld user_us=%lld sys_us=%lld maxrss_kib=%ld exit=%d signal=%d timed_out=%d\n",
	       wall_ns, timeval_us(usage.ru_utime), timeval_us(usage.ru_stime), usage.ru_maxrss,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       WIFSIGNALED(status) ? WTERMSIG(status) : 0, (int)timed_out);
	return 0;
}

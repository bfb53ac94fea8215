/*
 * Sandbox process of the e2e pod images: it holds a pod's namespaces open and does nothing
 * else. It exits 0 on SIGINT or SIGTERM and, as PID 1 of a pod that shares its PID
 * namespace, reaps the orphans that the kernel re-parents to it.
 *
 * Every signal it cares about stays blocked and is taken synchronously with sigwaitinfo():
 * a blocked signal is queued even for a PID 1 that installed no handler (the kernel drops
 * unhandled signals sent to a namespace's init only when they are not blocked), and no
 * code runs in signal context.
 *
 * Build: cc -static -O2 -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

static void reap_children(void)
{
	/* One SIGCHLD may stand for several exits: reap until none is left. */
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid > 0)
			continue;
		if (pid < 0 && errno == EINTR)
			continue;
		return;
	}
}

int main(int argc, char **argv)
{
	sigset_t wanted;
	(void)argv;

	if (argc > 1) {
		fprintf(stderr, "usage: pause (takes no arguments)\n");
		return 2;
	}
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
		fprintf(stderr, "pause: sigprocmask: %s\n", strerror(errno));
		return 1;
	}
	/* Children that exited before the mask was set. */
	reap_children();

	for (;;) {
		int sig = sigwaitinfo(&wanted, NULL);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "pause: sigwaitinfo: %s\n", strerror(errno));
			return 1;
		}
		if (sig == SIGCHLD) {
			reap_children();
			continue;
		}
		/* SIGINT or SIGTERM: a requested stop. */
		return 0;
	}
}

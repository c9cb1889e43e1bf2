/*
 * The workload, the VM's main process: spawning (shared with exec sessions),
 * its exit and restart policy with Docker's backoff, and shutdown.
 */
#include "kestrel.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct workload wl = { .state = W_STARTING, .exit_code = -1 };

/* Signal the process group a spawned child leads, or the child itself if it
 * has not called setsid() yet (a SIGNAL or SHUTDOWN right after the fork). */
void kill_group(pid_t pid, int sig)
{
	if (kill(-pid, sig) < 0 && errno == ESRCH)
		kill(pid, sig);
}

/* fork+exec into /newroot as `user` (NULL: root), or in the agent's own root
 * (the initramfs: a build reads the upper layer from there); in the child,
 * failures print to fd 2 and exit 127 (not found) or 126 (cannot run), like Docker. */
pid_t spawn(char *const argv[], char *const envp[], const char *cwd, const char *user, int fd0,
	    int fd1, int fd2, bool in_image)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	if (dup2(fd0, 0) < 0 || dup2(fd1, 1) < 0 || dup2(fd2, 2) < 0)
		_exit(126);
	if (isatty(0)) /* an exec session's pty: make it the controlling terminal */
		ioctl(0, TIOCSCTTY, 0);
	if (in_image && (chroot(NEWROOT) < 0 || chdir("/") < 0)) {
		dprintf(2, "kestrel: chroot: %s\n", strerror(errno));
		_exit(126);
	}
	/* The workdir is made as root (as Docker does), entered as the user. */
	if (access(cwd, F_OK) < 0)
		mkdir_p(cwd);
	struct strv env = { 0 };
	for (size_t i = 0; envp[i]; i++)
		strv_add(&env, envp[i]);
	if (switch_user(user, &env) < 0)
		_exit(126);
	if (chdir(cwd) < 0) {
		dprintf(2, "kestrel: chdir %s: %s\n", cwd, strerror(errno));
		_exit(126);
	}
	if (!argv[0]) {
		dprintf(2, "kestrel: no command given\n");
		_exit(127);
	}
	environ = env.v;
	execvp(argv[0], argv);
	int e = errno;
	if (e == ENOENT && !strchr(argv[0], '/'))
		dprintf(2, "exec: \"%s\": executable file not found in $PATH\n", argv[0]);
	else
		dprintf(2, "exec: \"%s\": %s\n", argv[0], strerror(e));
	_exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}

void start_workload(void)
{
	pid_t pid = spawn(spec_argv.v, base_env.v, spec_workdir, spec_user, devnull, console, console, true);
	if (pid < 0) {
		logmsg("cannot fork the workload: %s", strerror(errno));
		wl.restart_at = now_ms() + 1000;
		return;
	}
	wl.pid = pid;
	wl.state = W_RUNNING;
	wl.started = now_ms();
	wl.restart_at = 0;
	send_state(NULL);
}

static void go_final(void)
{
	wl.final = true;
	wl.state = W_EXITED;
	wl.poweroff_at = now_ms() + 1000;
}

static void workload_exited(int status)
{
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	uint64_t now = now_ms();
	bool again = !wl.shutting_down &&
		     (restart_policy == R_ALWAYS ||
		      (restart_policy == R_ON_FAILURE && code != 0 &&
		       (max_restarts == 0 || wl.restarts < max_restarts)));
	wl.exit_code = code;
	wl.pid = 0;
	struct buf b = { 0 };
	rec(&b, "exit_code=%d", code);
	rec(&b, "restarting=%d", again);
	rec(&b, "restarts=%d", wl.restarts);
	send_frame(F_WORKLOAD_EXIT, 0, b.p, b.len);
	buf_free(&b);
	if (!again) {
		go_final();
		return;
	}
	/* Docker's backoff: 100 ms doubling, reset after 10 s of good run. */
	if (now - wl.started >= 10000)
		wl.backoff = 0;
	wl.restart_at = now + (100u << (wl.backoff < 7 ? wl.backoff : 7));
	wl.backoff++;
	wl.restarts++;
	wl.state = W_STARTING;
}

void handle_shutdown(const char *p, size_t n)
{
	char s[16] = { 0 };
	memcpy(s, p, n < sizeof s - 1 ? n : sizeof s - 1);
	if (wl.final || wl.shutting_down)
		return;
	wl.shutting_down = true;
	if (wl.state == W_RUNNING) {
		int grace = atoi(s);
		kill_group(wl.pid, stop_signal);
		wl.kill_at = now_ms() + (uint64_t)(grace > 0 ? grace : 0) * 1000;
		return;
	}
	/* Not running (waiting to restart): end now with the last code. */
	struct buf b = { 0 };
	rec(&b, "exit_code=%d", wl.exit_code < 0 ? 0 : wl.exit_code);
	rec(&b, "restarting=0");
	rec(&b, "restarts=%d", wl.restarts);
	send_frame(F_WORKLOAD_EXIT, 0, b.p, b.len);
	buf_free(&b);
	go_final();
}

void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (wl.state == W_RUNNING && pid == wl.pid) {
			workload_exited(st);
			continue;
		}
		for (struct session *s = sessions; s; s = s->next)
			if (s->pid == pid && !s->reaped) {
				s->reaped = true;
				s->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			}
	}
}

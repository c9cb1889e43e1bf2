/*
 * Exec sessions: one child per EXEC frame, its stdout/stderr pumped into
 * frames, its stdin fed from STDIN frames; EXIT once it is reaped and its
 * pipes are drained.  With tty=1 the child gets a pty instead of pipes (stdin,
 * stdout and stderr all on it, its controlling terminal): the master is read
 * as stdout, written as stdin, and RESIZE frames set its window size.
 */
#include "kestrel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

struct session *sessions;
size_t stdin_total;

static void session_orphan(struct session *s)
{
	if (!s->reaped)
		kill_group(s->pid, SIGKILL);
	s->orphan = true;
	close_fd(&s->out);
	close_fd(&s->err);
	close_fd(&s->in);
	stdin_total -= s->inq.len;
	buf_free(&s->inq);
}

void kill_sessions(void)
{
	for (struct session *s = sessions; s; s = s->next)
		session_orphan(s);
}

struct session *find_session(uint32_t id)
{
	for (struct session *s = sessions; s; s = s->next)
		if (s->id == id && !s->orphan)
			return s;
	return NULL;
}

/* Returns false at EOF or error (the fd is then closed). */
bool pump_pipe(struct session *s, int *fd, int type)
{
	char b[CHUNK];
	ssize_t n = read(*fd, b, sizeof b);
	if (n > 0) {
		send_frame(type, s->id, b, (size_t)n);
		return true;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	close_fd(fd);
	return false;
}

static void session_fail(uint32_t id, const char *msg, int code)
{
	char c[16];
	send_frame(F_STDERR, id, msg, strlen(msg));
	snprintf(c, sizeof c, "%d", code);
	send_frame(F_EXIT, id, c, strlen(c));
}

static void set_winsize(int fd, unsigned long rows, unsigned long cols)
{
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	if (rows && cols && rows <= 0xffff && cols <= 0xffff)
		ioctl(fd, TIOCSWINSZ, &ws);
}

/* rows=N and cols=N records (EXEC and RESIZE); false for any other record. */
static bool size_record(const char *r, unsigned long *rows, unsigned long *cols)
{
	if (!strncmp(r, "rows=", 5))
		*rows = strtoul(r + 5, NULL, 10);
	else if (!strncmp(r, "cols=", 5))
		*cols = strtoul(r + 5, NULL, 10);
	else
		return false;
	return true;
}

/* p[0] the master, p[1] its peer: opened through the master, so it is the
 * image root's devpts instance (the child's ttyname(3) finds it there). */
static int open_pty(int p[2], unsigned long rows, unsigned long cols)
{
	int unlock = 0;
	p[0] = open(NEWROOT "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (p[0] < 0 || ioctl(p[0], TIOCSPTLCK, &unlock) < 0)
		return -1;
	p[1] = ioctl(p[0], TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (p[1] < 0)
		return -1;
	set_winsize(p[0], rows, cols);
	return 0;
}

void handle_resize(uint32_t id, const char *p, size_t n)
{
	struct session *s = find_session(id);
	char b[64];
	unsigned long rows = 0, cols = 0;
	if (!s || !s->tty || s->out < 0 || n >= sizeof b)
		return;
	memcpy(b, p, n);
	b[n] = 0;
	for (char *r = b; r < b + n; r += strlen(r) + 1)
		size_record(r, &rows, &cols);
	set_winsize(s->out, rows, cols);
}

void handle_exec(uint32_t id, const char *p, size_t n)
{
	if (find_session(id)) {
		logmsg("exec: session %u already exists", id);
		return;
	}
	char *recs = malloc(n + 1);
	if (!recs)
		return;
	memcpy(recs, p, n);
	recs[n] = 0;
	struct strv argv = { 0 }, env = { 0 };
	const char *cwd = spec_workdir, *user = spec_user;
	bool want_stdin = false, tty = false, in_image = true;
	unsigned long rows = 0, cols = 0;
	for (size_t i = 0; i < base_env.n; i++)
		strv_add(&env, base_env.v[i]);
	for (char *r = recs; r < recs + n; r += strlen(r) + 1) {
		if (!strncmp(r, "arg=", 4))
			strv_add(&argv, r + 4);
		else if (!strncmp(r, "env=", 4) && strchr(r + 4, '='))
			env_set(&env, r + 4, true);
		else if (!strncmp(r, "cwd=", 4) && r[4])
			cwd = r + 4;
		else if (!strncmp(r, "user=", 5) && r[5])
			user = r + 5;
		else if (!strcmp(r, "stdin=1"))
			want_stdin = true;
		else if (!strcmp(r, "tty=1"))
			tty = true;
		else if (!strcmp(r, "root=agent") && build_mode)
			in_image = false;
		else
			size_record(r, &rows, &cols);
	}
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, pi[2] = { -1, -1 };
	if (!argv.n) {
		session_fail(id, "kestrel: no command given\n", 127);
	} else if (tty && (open_pty(po, rows, cols) ||
			   (want_stdin && (pi[1] = fcntl(po[0], F_DUPFD_CLOEXEC, 0)) < 0))) {
		session_fail(id, "kestrel: cannot open a pty\n", 126);
	} else if (!tty && (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) ||
			    (want_stdin && pipe2(pi, O_CLOEXEC)))) {
		session_fail(id, "kestrel: pipe failed\n", 126);
	} else {
		int fd0 = tty ? po[1] : want_stdin ? pi[0] : devnull;
		pid_t pid = spawn(argv.v, env.v, cwd, user, fd0, po[1], tty ? po[1] : pe[1], in_image);
		if (pid < 0) {
			session_fail(id, "kestrel: fork failed\n", 126);
		} else {
			struct session *s = calloc(1, sizeof *s);
			if (s) {
				*s = (struct session){ .next = sessions, .id = id, .pid = pid,
						       .out = po[0], .err = pe[0], .in = pi[1],
						       .tty = tty };
				po[0] = pe[0] = pi[1] = -1;
				fcntl(s->out, F_SETFL, O_NONBLOCK);
				fcntl(s->err, F_SETFL, O_NONBLOCK);
				if (s->in >= 0)
					fcntl(s->in, F_SETFL, O_NONBLOCK);
				sessions = s;
			} else {
				kill_group(pid, SIGKILL);
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		close_fd(&po[i]);
		close_fd(&pe[i]);
		close_fd(&pi[i]);
	}
	strv_free(&argv);
	strv_free(&env);
	free(recs);
}

/* After the child exited: drain what it left in the pipes, then EXIT. */
void finish_sessions(void)
{
	for (struct session **pp = &sessions; *pp;) {
		struct session *s = *pp;
		if (s->reaped && !s->orphan) {
			while (s->out >= 0 && pump_pipe(s, &s->out, F_STDOUT))
				;
			while (s->err >= 0 && pump_pipe(s, &s->err, F_STDERR))
				;
			/* Grandchildren may hold the pipes open: stop listening. */
			close_fd(&s->out);
			close_fd(&s->err);
			char c[16];
			snprintf(c, sizeof c, "%d", s->code);
			send_frame(F_EXIT, s->id, c, strlen(c));
			session_orphan(s);
		}
		if (s->reaped && s->orphan) {
			*pp = s->next;
			free(s);
		} else {
			pp = &s->next;
		}
	}
}

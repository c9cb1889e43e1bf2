/*
 * The control channel: the virtio-serial port named hypr.agent, and the
 * frames on it.  While the host end is closed the port reports POLLHUP
 * forever, so it leaves the poll set, and the SIGIO that virtio_console sends
 * on every host open/close and on data tells us to look again.
 *
 * The guest learns of host open/close through control messages handled in a
 * kernel workqueue, while data arrives on the interrupt path: a new host's
 * first bytes can be readable before the old host's close is reported.  So
 * the connection state only gates writing; input is never dropped, and a
 * conversation is delimited by HELLO: it kills the exec sessions of the
 * previous host, discards output queued for it, and is answered by a STATE
 * that echoes HELLO's nonce so the host can ignore anything stale before it.
 * Frames are written whole (one write(2) never splits a frame).
 */
#include "kestrel.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int chan = -1;
bool chan_up;
struct buf outq;
static struct buf inbuf;

static void parse_input(const char *b, size_t n);

void send_frame(int type, uint32_t sid, const void *p, size_t n)
{
	if (outq.len + n > OUTQ_LIMIT)
		return; /* the host has been away long: state is re-sent on HELLO */
	unsigned char h[HDR] = { (unsigned char)type,
				 sid >> 24, sid >> 16, sid >> 8, sid,
				 n >> 24, n >> 16, n >> 8, n };
	buf_add(&outq, h, HDR);
	buf_add(&outq, p, n);
}

void rec(struct buf *b, const char *fmt, ...)
{
	char r[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r, sizeof r, fmt, ap);
	va_end(ap);
	if (n >= 0 && n < (int)sizeof r)
		buf_add(b, r, (size_t)n + 1); /* with the NUL */
}

void send_state(const char *hello)
{
	static const char *names[] = { "starting", "running", "exited" };
	struct buf b = { 0 };
	rec(&b, "ready=1");
	if (hello)
		rec(&b, "hello=%s", hello);
	rec(&b, "workload=%s", names[wl.state]);
	if (wl.state == W_RUNNING)
		rec(&b, "pid=%d", (int)wl.pid);
	if (wl.exit_code >= 0)
		rec(&b, "exit_code=%d", wl.exit_code);
	rec(&b, "restarts=%d", wl.restarts);
	send_frame(F_STATE, 0, b.p, b.len);
	buf_free(&b);
}

/* Write whole frames only, as many as fit in one virtio_console write. */
void flush_out(void)
{
	while (chan_up && outq.len) {
		size_t n = 0;
		while (n + HDR <= outq.len) {
			const unsigned char *h = (const unsigned char *)outq.p + n;
			size_t f = HDR + ((size_t)h[5] << 24 | (size_t)h[6] << 16 | (size_t)h[7] << 8 | h[8]);
			if (n && n + f > MAX_WRITE)
				break;
			n += f;
		}
		ssize_t w = write(chan, outq.p, n);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				chan_up = false; /* unplugged? the next probe tells */
			return;
		}
		buf_drop(&outq, (size_t)w);
	}
}

static void set_link(bool up)
{
	if (!up && chan_up && wl.final)
		wl.acked = true; /* hanging up after the final exit is the host's ack */
	chan_up = up;
}

void find_channel(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	char dev[300] = "";
	while (d && !dev[0] && (e = readdir(d))) {
		char path[300];
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		char *name = read_file(path);
		if (name && !strncmp(name, PORT_NAME, strlen(PORT_NAME)) &&
		    (name[strlen(PORT_NAME)] == '\n' || !name[strlen(PORT_NAME)]))
			snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
		free(name);
	}
	if (d)
		closedir(d);
	if (!dev[0] || (chan = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)) < 0)
		return;
	boot_mark("channel");
	/* Ask for SIGIO on host open/close and on data. */
	fcntl(chan, F_SETOWN, getpid());
	fcntl(chan, F_SETFL, O_NONBLOCK | O_ASYNC);
}

/* Read what the port holds and re-read the host connection state. */
void probe_channel(void)
{
	if (chan < 0)
		return;
	struct pollfd p = { .fd = chan, .events = POLLIN };
	if (poll(&p, 1, 0) < 0)
		return;
	if (p.revents & POLLIN)
		read_channel();
	set_link(!(p.revents & POLLHUP));
}

/* The host's wall clock, "SECONDS.NANOSECONDS": a VM restored from a snapshot wakes
 * with the time it was saved at; the host sends its own at every connection. */
static void set_clock(const char *p, size_t n)
{
	char b[40];
	if (n >= sizeof b)
		return;
	memcpy(b, p, n);
	b[n] = 0;
	char *dot = strchr(b, '.');
	struct timespec ts = { .tv_sec = strtoll(b, NULL, 10),
			       .tv_nsec = dot ? strtol(dot + 1, NULL, 10) : 0 };
	if (ts.tv_sec > 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000 &&
	    clock_settime(CLOCK_REALTIME, &ts) < 0)
		logmsg("clock_settime: %s", strerror(errno));
}

static void handle_frame(int type, uint32_t sid, const char *p, size_t n)
{
	struct session *s;
	switch (type) {
	case F_HELLO: {
		/* A new conversation: the previous host's sessions and output go. */
		char nonce[65];
		size_t k = 0;
		while (k < n && k < sizeof nonce - 1 && (isalnum((unsigned char)p[k]) || p[k] == '-'))
			nonce[k] = p[k], k++;
		nonce[k] = 0;
		kill_sessions();
		buf_free(&outq);
		send_state(k == n && k ? nonce : NULL);
		boot_mark("ready");
		boot_report();
		break;
	}
	case F_EXEC:
		handle_exec(sid, p, n);
		break;
	case F_STDIN:
		if (!(s = find_session(sid)) || s->in < 0 || s->in_eof)
			break;
		if (n == 0) {
			s->in_eof = true;
			if (!s->inq.len)
				close_fd(&s->in);
		} else {
			buf_add(&s->inq, p, n);
			stdin_total += n;
		}
		break;
	case F_SIGNAL: /* session 0: the workload (docker kill -s) */
		if (n >= 1 && sid == 0 && wl.state == W_RUNNING)
			kill_group(wl.pid, (unsigned char)p[0]);
		else if (n >= 1 && sid && (s = find_session(sid)) && !s->reaped)
			kill_group(s->pid, (unsigned char)p[0]);
		break;
	case F_SHUTDOWN:
		handle_shutdown(p, n);
		break;
	case F_RESIZE:
		handle_resize(sid, p, n);
		break;
	case F_CLOCK:
		set_clock(p, n);
		break;
	default:
		logmsg("unknown frame type %d", type);
	}
}

/* Consume the port's data, connected or not: nothing that arrived is dropped
 * (a new host's HELLO may be readable before the old host's close is seen). */
void read_channel(void)
{
	static char b[HDR + MAX_PAYLOAD];
	ssize_t n;
	while (stdin_total < STDIN_HIGH && (n = read(chan, b, sizeof b)) > 0)
		parse_input(b, (size_t)n);
}

static void parse_input(const char *b, size_t n)
{
	buf_add(&inbuf, b, n);
	size_t off = 0;
	while (inbuf.len - off >= HDR) {
		const unsigned char *h = (const unsigned char *)inbuf.p + off;
		uint32_t sid = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
		size_t len = (size_t)h[5] << 24 | (size_t)h[6] << 16 | (size_t)h[7] << 8 | h[8];
		if (len > MAX_PAYLOAD) {
			logmsg("bad frame length %zu, dropping input", len);
			buf_free(&inbuf);
			return;
		}
		if (inbuf.len - off < HDR + len)
			break;
		handle_frame(h[0], sid, inbuf.p + off + HDR, len);
		off += HDR + len;
	}
	buf_drop(&inbuf, off);
}

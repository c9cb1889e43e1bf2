/* Small helpers every part of the agent uses, and the boot-step timer. */
#include "kestrel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int console = 2, devnull = -1;

/* Boot steps and when they ended (CLOCK_MONOTONIC: time since the kernel
 * started), reported once in the kernel log when the agent is first ready. */
#define MAX_MARKS 16
static struct { const char *step; uint64_t us; } marks[MAX_MARKS];
static int nmarks;
static bool reported;

void logmsg(const char *fmt, ...)
{
	char b[512];
	size_t n = 9;
	memcpy(b, "kestrel: ", n);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(b + n, sizeof b - n - 1, fmt, ap);
	va_end(ap);
	if (m > 0)
		n += (size_t)m < sizeof b - n - 1 ? (size_t)m : sizeof b - n - 2;
	b[n++] = '\n';
	(void)!write(console, b, n);
}

uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

void buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t c = b->cap ? b->cap : 1024;
		while (c < b->len + n)
			c *= 2;
		char *p = realloc(b->p, c);
		if (!p) {
			logmsg("out of memory, dropping %zu bytes", n);
			return;
		}
		b->p = p;
		b->cap = c;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

void buf_drop(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

void strv_add(struct strv *s, const char *str)
{
	if (s->n + 2 > s->cap) {
		size_t c = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, c * sizeof *v);
		if (!v)
			return;
		s->v = v;
		s->cap = c;
	}
	s->v[s->n++] = strdup(str);
	s->v[s->n] = NULL;
}

void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){ 0 };
}

/* Index of the KEY=... entry with the same key as `kv`, or -1. */
static int env_find(const struct strv *e, const char *kv)
{
	size_t k = strcspn(kv, "=");
	for (size_t i = 0; i < e->n; i++)
		if (!strncmp(e->v[i], kv, k) && e->v[i][k] == '=')
			return (int)i;
	return -1;
}

void env_set(struct strv *e, const char *kv, bool override)
{
	int i = env_find(e, kv);
	if (i < 0) {
		strv_add(e, kv);
	} else if (override) {
		free(e->v[i]);
		e->v[i] = strdup(kv);
	}
}

char *read_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b = { 0 };
	char tmp[4096];
	ssize_t n;
	while ((n = read(fd, tmp, sizeof tmp)) > 0)
		buf_add(&b, tmp, (size_t)n);
	close(fd);
	buf_add(&b, "", 1);
	return b.p;
}

void write_file(const char *path, const char *data)
{
	unlink(path); /* never write through an image's symlink */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, data, strlen(data)) < 0)
		logmsg("write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

void mkdir_p(const char *path)
{
	char p[4096];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	mkdir(p, 0755);
}

void xmount(const char *src, const char *dst, const char *type,
		   unsigned long flags, const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0)
		logmsg("mount %s on %s: %s", type, dst, strerror(errno));
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void pct_decode(char *s)
{
	char *o = s;
	while (*s) {
		int h, l;
		if (s[0] == '%' && (h = hexval(s[1])) >= 0 && (l = hexval(s[2])) >= 0) {
			*o++ = (char)(h * 16 + l);
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

noreturn void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* No ACPI power-off: reset instead; QEMU runs with -no-reboot. */
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

noreturn void fatal(const char *what)
{
	logmsg("fatal: %s", what);
	power_off();
}

void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

void boot_mark(const char *step)
{
	if (!reported && nmarks < MAX_MARKS)
		marks[nmarks].step = step, marks[nmarks++].us = now_us();
}

/* One line in the kernel log (dmesg), not on the console: it is the VM's log. */
void boot_report(void)
{
	if (reported || !nmarks)
		return;
	reported = true;
	char b[512];
	int n = snprintf(b, sizeof b, "<6>kestrel: boot ms:");
	for (int i = 0; i < nmarks && n > 0 && n < (int)sizeof b - 1; i++)
		n += snprintf(b + n, sizeof b - n, " %s=%llu.%llu", marks[i].step,
			      (unsigned long long)(marks[i].us / 1000),
			      (unsigned long long)(marks[i].us % 1000 / 100));
	if (n <= 0 || n >= (int)sizeof b - 1)
		return;
	b[n++] = '\n';
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, b, (size_t)n);
		close(fd);
	}
}

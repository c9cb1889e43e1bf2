/*
 * kestrel: hypr's guest agent, PID 1 of every microVM.
 *
 * Boot is linear: mount /proc /sys /dev, load the modules listed in
 * /lib/modules/load.order (finit_module, no modprobe), mount /dev/vda
 * (squashfs) under a tmpfs overlay at /newroot, configure lo and the NICs
 * from hypr.net= with ioctl(2) (busybox udhcpc only for "dhcp"), write
 * resolv.conf, hostname and hosts into /newroot and start the workload
 * described by /hypr/spec.  The agent stays in the initramfs; the workload
 * and exec sessions are chrooted into /newroot.
 *
 * After that everything happens in one single-threaded poll(2) loop.
 * SIGCHLD and SIGIO are blocked and read from a signalfd, so reaping and
 * control-channel hot-plug are ordinary events.  The control channel is the
 * virtio-serial port named hypr.agent.  While the host end is closed the port
 * reports POLLHUP forever, so it leaves the poll set, and the SIGIO that
 * virtio_console sends on every host open/close and on data tells us to look
 * again.
 *
 * The guest learns of host open/close through control messages handled in a
 * kernel workqueue, while data arrives on the interrupt path: a new host's
 * first bytes can be readable before the old host's close is reported.  So
 * the connection state only gates writing; input is never dropped, and a
 * conversation is delimited by HELLO: it kills the exec sessions of the
 * previous host, discards output queued for it, and is answered by a STATE
 * that echoes HELLO's nonce so the host can ignore anything stale before it.
 * Frames are written whole (one write(2) never splits a frame).  When the
 * workload ends for good the agent sends WORKLOAD_EXIT, waits (at most a
 * second) for the host to hang up as acknowledgement, syncs and powers off.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define NEWROOT "/newroot"
#define PORT_NAME "hypr.agent"
#define HDR 9
#define MAX_PAYLOAD 65536
#define CHUNK 16384            /* max STDOUT/STDERR payload per frame */
#define MAX_WRITE 32768        /* virtio_console takes at most this per write */
#define OUTQ_HIGH (256 * 1024) /* stop reading exec pipes above this */
#define OUTQ_LIMIT (4 << 20)   /* drop frames above this (host away for long) */
#define STDIN_HIGH (1 << 20)   /* stop reading the channel above this */
#define MAX_NICS 8
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum { F_HELLO = 1, F_EXEC, F_STDIN, F_SIGNAL, F_SHUTDOWN };
enum { F_STATE = 0x81, F_STDOUT, F_STDERR, F_EXIT, F_WORKLOAD_EXIT };
enum { R_NO, R_ALWAYS, R_ON_FAILURE };
enum { W_STARTING, W_RUNNING, W_EXITED };

struct buf { char *p; size_t len, cap; };
struct strv { char **v; size_t n, cap; };

struct nic {
	char ifname[IFNAMSIZ], cur[IFNAMSIZ];
	unsigned char mac[6];
	bool dhcp, has_gw;
	struct in_addr addr, gw;
	int prefix, mtu;
};

struct session {
	struct session *next;
	uint32_t id;
	pid_t pid;
	int out, err, in;     /* our ends of the child's pipes, -1 once closed */
	struct buf inq;       /* stdin not yet written to the child */
	bool in_eof, reaped, orphan;
	int code;
};

static int console = 2, devnull = -1, sigfd = -1;
static int chan = -1;          /* the virtio-serial port, once found */
static bool chan_up;           /* host end connected (as last reported) */
static uint64_t chan_scan_at, chan_scan_until, chan_probe_at;
static struct buf inbuf, outq;
static struct session *sessions;
static size_t stdin_total;

static struct nic nics[MAX_NICS];
static int nnics;
static struct strv dns;
static char hostname[65] = "hypr";
static bool probe;

static struct strv spec_argv, base_env;
static char *spec_workdir;
static int restart_policy = R_NO, max_restarts;

static struct {
	int state;
	pid_t pid;
	int exit_code;          /* -1 until the first exit */
	int restarts;           /* restarts performed so far */
	int backoff;            /* consecutive quick failures */
	uint64_t started, restart_at, kill_at;
	bool shutting_down, final, acked;
	uint64_t poweroff_at;
} wl = { .state = W_STARTING, .exit_code = -1 };

/* ---------------------------------------------------------------- utils */

static void logmsg(const char *fmt, ...)
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

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void buf_add(struct buf *b, const void *d, size_t n)
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

static void buf_drop(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

static void strv_add(struct strv *s, const char *str)
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

static void strv_free(struct strv *s)
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

static void env_set(struct strv *e, const char *kv, bool override)
{
	int i = env_find(e, kv);
	if (i < 0) {
		strv_add(e, kv);
	} else if (override) {
		free(e->v[i]);
		e->v[i] = strdup(kv);
	}
}

static char *read_file(const char *path)
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

static void write_file(const char *path, const char *data)
{
	unlink(path); /* never write through an image's symlink */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, data, strlen(data)) < 0)
		logmsg("write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void mkdir_p(const char *path)
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

static void xmount(const char *src, const char *dst, const char *type,
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

static void pct_decode(char *s)
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

static noreturn void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* No ACPI power-off: reset instead; QEMU runs with -no-reboot. */
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static noreturn void fatal(const char *what)
{
	logmsg("fatal: %s", what);
	power_off();
}

/* ------------------------------------------------------------- kernel */

static void load_modules(void)
{
	char *list = read_file("/lib/modules/load.order");
	if (!list)
		return;
	for (char *save = NULL, *name = strtok_r(list, "\n", &save); name;
	     name = strtok_r(NULL, "\n", &save)) {
		char path[256];
		snprintf(path, sizeof path, "/lib/modules/%s", name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) < 0) {
			if (errno != EEXIST)
				logmsg("load %s: %s", name, strerror(errno));
		}
		if (fd >= 0)
			close(fd);
	}
	free(list);
}

static bool parse_mac(const char *s, unsigned char mac[6])
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2],
		      &mac[3], &mac[4], &mac[5]) == 6;
}

/* hypr.net=<ifname>,<addr>/<prefix>|dhcp,<gateway>,<mtu>,<mac> */
static void parse_net(char *v)
{
	if (nnics == MAX_NICS)
		return;
	struct nic *n = &nics[nnics];
	char *f[5];
	for (int i = 0; i < 5; i++)
		f[i] = strsep(&v, ",");
	if (!f[4] || !*f[0] || strlen(f[0]) >= IFNAMSIZ || !parse_mac(f[4], n->mac)) {
		logmsg("bad hypr.net entry");
		return;
	}
	snprintf(n->ifname, sizeof n->ifname, "%s", f[0]);
	if (!strcmp(f[1], "dhcp")) {
		n->dhcp = true;
	} else {
		char *slash = strchr(f[1], '/');
		n->prefix = slash ? atoi(slash + 1) : 32;
		if (slash)
			*slash = 0;
		if (!inet_aton(f[1], &n->addr) || n->prefix < 0 || n->prefix > 32) {
			logmsg("bad address for %s", n->ifname);
			return;
		}
	}
	n->has_gw = *f[2] && inet_aton(f[2], &n->gw);
	n->mtu = atoi(f[3]);
	nnics++;
}

static void parse_cmdline(void)
{
	char *cmd = read_file("/proc/cmdline");
	if (!cmd)
		return;
	for (char *save = NULL, *w = strtok_r(cmd, " \n", &save); w;
	     w = strtok_r(NULL, " \n", &save)) {
		if (!strncmp(w, "hypr.net=", 9)) {
			parse_net(w + 9);
		} else if (!strncmp(w, "hypr.dns=", 9)) {
			char *v = w + 9, *s;
			while ((s = strsep(&v, ",")))
				if (*s)
					strv_add(&dns, s);
		} else if (!strncmp(w, "hypr.hostname=", 14)) {
			snprintf(hostname, sizeof hostname, "%s", w + 14);
		} else if (!strcmp(w, "hypr.probe=1")) {
			probe = true;
		}
	}
	free(cmd);
}

/* ------------------------------------------------------------ network */

static struct ifreq ifr_for(const char *name)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	memcpy(r.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
	return r;
}

static void ifioctl(int s, unsigned long req, struct ifreq *r, const char *what)
{
	if (ioctl(s, req, r) < 0)
		logmsg("%s %s: %s", what, r->ifr_name, strerror(errno));
}

static void set_ipv4(int s, const char *ifn, unsigned long req, struct in_addr a, const char *what)
{
	struct ifreq r = ifr_for(ifn);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };
	memcpy(&r.ifr_addr, &sin, sizeof sin);
	ifioctl(s, req, &r, what);
}

static void if_up(int s, const char *ifn)
{
	struct ifreq r = ifr_for(ifn);
	ifioctl(s, SIOCGIFFLAGS, &r, "get flags");
	r.ifr_flags |= IFF_UP;
	ifioctl(s, SIOCSIFFLAGS, &r, "up");
}

static void rename_if(int s, const char *from, const char *to)
{
	struct ifreq r = ifr_for(from);
	memcpy(r.ifr_newname, to, strnlen(to, IFNAMSIZ - 1));
	ifioctl(s, SIOCSIFNAME, &r, "rename");
}

static bool find_by_mac(const unsigned char mac[6], char out[IFNAMSIZ])
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		char path[300];
		unsigned char m[6];
		snprintf(path, sizeof path, "/sys/class/net/%s/address", e->d_name);
		char *a = read_file(path);
		if (a && parse_mac(a, m) && !memcmp(m, mac, 6) && strlen(e->d_name) < IFNAMSIZ) {
			memcpy(out, e->d_name, strlen(e->d_name) + 1);
			found = true;
		}
		free(a);
	}
	if (d)
		closedir(d);
	return found;
}

static void run_dhcp(const char *ifn)
{
	pid_t p = fork();
	if (p == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		if (!dns.n)
			setenv("HYPR_RESOLV", NEWROOT "/etc/resolv.conf", 1);
		/* Foreground until leased (or 5 tries failed), then daemonizes. */
		execl("/bin/busybox", "udhcpc", "-i", ifn, "-s", "/etc/udhcpc.script",
		      "-t", "5", "-T", "1", "-A", "3", "-b", (char *)NULL);
		_exit(127);
	}
	if (p > 0)
		waitpid(p, NULL, 0);
}

static void setup_network(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		logmsg("socket: %s", strerror(errno));
		return;
	}
	if_up(s, "lo");
	/* Find each NIC by MAC (virtio_net probes synchronously, but be lenient). */
	for (int i = 0; i < nnics; i++) {
		for (int t = 0; t < 200 && !find_by_mac(nics[i].mac, nics[i].cur); t++)
			usleep(10000);
		if (!nics[i].cur[0])
			logmsg("no NIC with the MAC of %s", nics[i].ifname);
	}
	/* Rename in two phases so that swapped names cannot collide. */
	for (int i = 0; i < nnics; i++)
		if (nics[i].cur[0] && strcmp(nics[i].cur, nics[i].ifname)) {
			char tmp[IFNAMSIZ];
			snprintf(tmp, sizeof tmp, "hyprtmp%d", i);
			rename_if(s, nics[i].cur, tmp);
			memcpy(nics[i].cur, tmp, sizeof tmp);
		}
	for (int i = 0; i < nnics; i++)
		if (nics[i].cur[0] && strcmp(nics[i].cur, nics[i].ifname))
			rename_if(s, nics[i].cur, nics[i].ifname);
	for (int i = 0; i < nnics; i++) {
		struct nic *n = &nics[i];
		if (!n->cur[0])
			continue;
		if (n->mtu > 0) {
			struct ifreq r = ifr_for(n->ifname);
			r.ifr_mtu = n->mtu;
			ifioctl(s, SIOCSIFMTU, &r, "mtu");
		}
		if (!n->dhcp) {
			struct in_addr mask = { htonl(n->prefix ? ~0u << (32 - n->prefix) : 0) };
			set_ipv4(s, n->ifname, SIOCSIFADDR, n->addr, "address");
			set_ipv4(s, n->ifname, SIOCSIFNETMASK, mask, "netmask");
		}
		if_up(s, n->ifname);
		if (n->dhcp) {
			run_dhcp(n->ifname);
		} else if (n->has_gw) {
			struct rtentry rt;
			struct sockaddr_in any = { .sin_family = AF_INET };
			struct sockaddr_in gw = { .sin_family = AF_INET, .sin_addr = n->gw };
			memset(&rt, 0, sizeof rt);
			memcpy(&rt.rt_dst, &any, sizeof any);
			memcpy(&rt.rt_genmask, &any, sizeof any);
			memcpy(&rt.rt_gateway, &gw, sizeof gw);
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			rt.rt_dev = n->ifname;
			if (ioctl(s, SIOCADDRT, &rt) < 0)
				logmsg("default route via %s: %s", inet_ntoa(n->gw), strerror(errno));
		}
	}
	close(s);
}

/* -------------------------------------------------------------- rootfs */

static void setup_rootfs(void)
{
	for (int t = 0; t < 500 && access("/dev/vda", F_OK); t++)
		usleep(10000);
	mkdir("/mnt", 0755);
	mkdir("/mnt/ro", 0755);
	if (mount("/dev/vda", "/mnt/ro", "squashfs", MS_RDONLY, NULL) < 0)
		fatal("cannot mount the image (/dev/vda)");
	xmount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755");
	mkdir("/mnt/rw/upper", 0755);
	mkdir("/mnt/rw/work", 0755);
	mkdir(NEWROOT, 0755);
	if (mount("overlay", NEWROOT, "overlay", 0,
		  "lowerdir=/mnt/ro,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work") < 0)
		fatal("cannot mount the overlay root");
	xmount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	xmount("sysfs", NEWROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	xmount("devtmpfs", NEWROOT "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	xmount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
	       "newinstance,ptmxmode=0666,mode=0620,gid=5");
	xmount("tmpfs", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	/* What devtmpfs lacks and images expect (as in Docker's /dev). */
	symlink("/proc/self/fd", NEWROOT "/dev/fd");
	symlink("/proc/self/fd/0", NEWROOT "/dev/stdin");
	symlink("/proc/self/fd/1", NEWROOT "/dev/stdout");
	symlink("/proc/self/fd/2", NEWROOT "/dev/stderr");
	mkdir(NEWROOT "/etc", 0755);
	mkdir(NEWROOT "/tmp", 01777);
}

static void write_etc(void)
{
	char b[1024];
	int n = 0;
	if (dns.n) {
		for (size_t i = 0; i < dns.n && n < (int)sizeof b - 64; i++)
			n += snprintf(b + n, sizeof b - n, "nameserver %s\n", dns.v[i]);
		write_file(NEWROOT "/etc/resolv.conf", b);
	}
	snprintf(b, sizeof b, "%s\n", hostname);
	write_file(NEWROOT "/etc/hostname", b);
	const char *self = "127.0.1.1";
	for (int i = 0; i < nnics; i++)
		if (!nics[i].dhcp && nics[i].cur[0]) {
			self = inet_ntoa(nics[i].addr);
			break;
		}
	snprintf(b, sizeof b, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
		 self, hostname);
	write_file(NEWROOT "/etc/hosts", b);
	if (sethostname(hostname, strlen(hostname)) < 0)
		logmsg("sethostname: %s", strerror(errno));
}

static void read_spec(void)
{
	char *text = read_file("/hypr/spec");
	for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
	     l = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(l, '=');
		if (!v)
			continue;
		*v++ = 0;
		pct_decode(v);
		if (!strcmp(l, "arg"))
			strv_add(&spec_argv, v);
		else if (!strcmp(l, "env") && strchr(v, '='))
			env_set(&base_env, v, true);
		else if (!strcmp(l, "workdir") && *v)
			spec_workdir = strdup(v);
		else if (!strcmp(l, "restart"))
			restart_policy = !strcmp(v, "always") ? R_ALWAYS
					 : !strcmp(v, "on-failure") ? R_ON_FAILURE : R_NO;
		else if (!strcmp(l, "max_restarts"))
			max_restarts = atoi(v);
	}
	free(text);
	if (!spec_argv.n)
		strv_add(&spec_argv, "/bin/sh");
	if (!spec_workdir)
		spec_workdir = strdup("/");
	char h[80];
	snprintf(h, sizeof h, "HOSTNAME=%s", hostname);
	env_set(&base_env, DEFAULT_PATH, false);
	env_set(&base_env, h, false);
	env_set(&base_env, "HOME=/root", false);
}

/* ------------------------------------------------------------- processes */

/* fork+exec into /newroot; in the child, failures print to fd 2 and exit
 * 127 (not found) or 126 (cannot run), like Docker. */
static pid_t spawn(char *const argv[], char *const envp[], const char *cwd, int fd0, int fd1,
		   int fd2)
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
	if (chroot(NEWROOT) < 0 || chdir("/") < 0) {
		dprintf(2, "kestrel: chroot: %s\n", strerror(errno));
		_exit(126);
	}
	if (chdir(cwd) < 0) {
		mkdir_p(cwd);
		if (chdir(cwd) < 0) {
			dprintf(2, "kestrel: chdir %s: %s\n", cwd, strerror(errno));
			_exit(126);
		}
	}
	if (!argv[0]) {
		dprintf(2, "kestrel: no command given\n");
		_exit(127);
	}
	environ = (char **)envp;
	execvp(argv[0], argv);
	int e = errno;
	if (e == ENOENT && !strchr(argv[0], '/'))
		dprintf(2, "exec: \"%s\": executable file not found in $PATH\n", argv[0]);
	else
		dprintf(2, "exec: \"%s\": %s\n", argv[0], strerror(e));
	_exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}

/* --------------------------------------------------------------- frames */


static void send_frame(int type, uint32_t sid, const void *p, size_t n)
{
	if (outq.len + n > OUTQ_LIMIT)
		return; /* the host has been away long: state is re-sent on HELLO */
	unsigned char h[HDR] = { (unsigned char)type,
				 sid >> 24, sid >> 16, sid >> 8, sid,
				 n >> 24, n >> 16, n >> 8, n };
	buf_add(&outq, h, HDR);
	buf_add(&outq, p, n);
}

static void rec(struct buf *b, const char *fmt, ...)
{
	char r[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r, sizeof r, fmt, ap);
	va_end(ap);
	if (n >= 0 && n < (int)sizeof r)
		buf_add(b, r, (size_t)n + 1); /* with the NUL */
}

static void send_state(const char *hello)
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
static void flush_out(void)
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

/* ------------------------------------------------------------- sessions */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void session_orphan(struct session *s)
{
	if (!s->reaped)
		kill(-s->pid, SIGKILL);
	s->orphan = true;
	close_fd(&s->out);
	close_fd(&s->err);
	close_fd(&s->in);
	stdin_total -= s->inq.len;
	buf_free(&s->inq);
}

static void kill_sessions(void)
{
	for (struct session *s = sessions; s; s = s->next)
		session_orphan(s);
}

static struct session *find_session(uint32_t id)
{
	for (struct session *s = sessions; s; s = s->next)
		if (s->id == id && !s->orphan)
			return s;
	return NULL;
}

/* Returns false at EOF or error (the fd is then closed). */
static bool pump_pipe(struct session *s, int *fd, int type)
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

static void handle_exec(uint32_t id, const char *p, size_t n)
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
	const char *cwd = spec_workdir;
	bool want_stdin = false;
	for (size_t i = 0; i < base_env.n; i++)
		strv_add(&env, base_env.v[i]);
	for (char *r = recs; r < recs + n; r += strlen(r) + 1) {
		if (!strncmp(r, "arg=", 4))
			strv_add(&argv, r + 4);
		else if (!strncmp(r, "env=", 4) && strchr(r + 4, '='))
			env_set(&env, r + 4, true);
		else if (!strncmp(r, "cwd=", 4) && r[4])
			cwd = r + 4;
		else if (!strcmp(r, "stdin=1"))
			want_stdin = true;
	}
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, pi[2] = { -1, -1 };
	if (!argv.n) {
		session_fail(id, "kestrel: no command given\n", 127);
	} else if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || (want_stdin && pipe2(pi, O_CLOEXEC))) {
		session_fail(id, "kestrel: pipe failed\n", 126);
	} else {
		pid_t pid = spawn(argv.v, env.v, cwd, want_stdin ? pi[0] : devnull, po[1], pe[1]);
		if (pid < 0) {
			session_fail(id, "kestrel: fork failed\n", 126);
		} else {
			struct session *s = calloc(1, sizeof *s);
			if (s) {
				*s = (struct session){ .next = sessions, .id = id, .pid = pid,
						       .out = po[0], .err = pe[0], .in = pi[1] };
				po[0] = pe[0] = pi[1] = -1;
				fcntl(s->out, F_SETFL, O_NONBLOCK);
				fcntl(s->err, F_SETFL, O_NONBLOCK);
				if (s->in >= 0)
					fcntl(s->in, F_SETFL, O_NONBLOCK);
				sessions = s;
			} else {
				kill(-pid, SIGKILL);
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
static void finish_sessions(void)
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

/* ------------------------------------------------------------- workload */

static void start_workload(void)
{
	pid_t pid = spawn(spec_argv.v, base_env.v, spec_workdir, devnull, console, console);
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

static void handle_shutdown(const char *p, size_t n)
{
	char s[16] = { 0 };
	memcpy(s, p, n < sizeof s - 1 ? n : sizeof s - 1);
	if (wl.final || wl.shutting_down)
		return;
	wl.shutting_down = true;
	if (wl.state == W_RUNNING) {
		int grace = atoi(s);
		kill(-wl.pid, SIGTERM);
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

static void reap(void)
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

/* -------------------------------------------------------------- channel */

static void set_link(bool up)
{
	if (!up && chan_up && wl.final)
		wl.acked = true; /* hanging up after the final exit is the host's ack */
	chan_up = up;
}

static void find_channel(void)
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
	/* Ask for SIGIO on host open/close and on data. */
	fcntl(chan, F_SETOWN, getpid());
	fcntl(chan, F_SETFL, O_NONBLOCK | O_ASYNC);
}

static void read_channel(void);
static void parse_input(const char *b, size_t n);

/* Read what the port holds and re-read the host connection state. */
static void probe_channel(void)
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
	case F_SIGNAL:
		if (n >= 1 && (s = find_session(sid)) && !s->reaped)
			kill(-s->pid, (unsigned char)p[0]);
		break;
	case F_SHUTDOWN:
		handle_shutdown(p, n);
		break;
	default:
		logmsg("unknown frame type %d", type);
	}
}

/* Consume the port's data, connected or not: nothing that arrived is dropped
 * (a new host's HELLO may be readable before the old host's close is seen). */
static void read_channel(void)
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

/* ----------------------------------------------------------------- main */

static void early_setup(void)
{
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mkdir("/dev", 0755);
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	int c = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	struct termios tio;
	if (c >= 0) {
		console = c;
		/* The console is a log file on the host: keep "\n" line ends. */
		if (!tcgetattr(c, &tio)) {
			tio.c_oflag &= ~(tcflag_t)ONLCR;
			tcsetattr(c, TCSANOW, &tio);
		}
	}
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* Three fds per exec session: lift the soft limit (children inherit it). */
	struct rlimit nofile;
	if (!getrlimit(RLIMIT_NOFILE, &nofile)) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	/* Keep 0-2 valid so pipe fds never land there. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			dup2(devnull, fd);
}

static void add_poll(struct pollfd *p, int *np, int fd, short ev)
{
	p[*np] = (struct pollfd){ .fd = fd, .events = ev };
	(*np)++;
}

static int timeout_until(uint64_t at, uint64_t now, int cur)
{
	if (!at)
		return cur;
	int t = at <= now ? 0 : (int)(at - now);
	return cur < 0 || t < cur ? t : cur;
}

int main(void)
{
	early_setup();
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGIO);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	parse_cmdline();
	if (probe) {
		logmsg("probe ok");
		power_off();
	}
	load_modules();
	setup_rootfs();
	read_spec();
	setup_network();
	write_etc();
	start_workload();
	chan_scan_until = now_ms() + 30000;

	for (;;) {
		uint64_t now = now_ms();
		if (chan < 0 && now >= chan_scan_at) {
			find_channel();
			chan_scan_at = now + (now < chan_scan_until ? 10 : 1000);
		}
		if (chan >= 0 && !chan_up && now >= chan_probe_at) {
			probe_channel(); /* safety net should a SIGIO be missed */
			chan_probe_at = now + 1000;
		}
		if (wl.state == W_STARTING && wl.restart_at && now >= wl.restart_at && !wl.final)
			start_workload();
		if (wl.kill_at && wl.state == W_RUNNING && now >= wl.kill_at) {
			kill(-wl.pid, SIGKILL);
			wl.kill_at = 0;
		}
		finish_sessions();
		flush_out();
		/* Wait for the host to take the final frames, or 1 s for one to come. */
		if (wl.final && (wl.acked || now >= wl.poweroff_at))
			power_off();

		static struct pollfd *pf;
		static struct session **owner;
		static size_t cap;
		size_t need = 2;
		for (struct session *s = sessions; s; s = s->next)
			need += 3;
		if (need > cap) {
			struct pollfd *npf = realloc(pf, need * sizeof *pf);
			struct session **no = npf ? realloc(owner, need * sizeof *no) : NULL;
			if (npf)
				pf = npf;
			if (!no)
				continue;
			owner = no;
			cap = need;
		}
		int np = 0, timeout = -1;
		add_poll(pf, &np, sigfd, POLLIN);
		owner[0] = NULL;
		if (chan_up) {
			owner[np] = NULL;
			add_poll(pf, &np, chan,
				 (stdin_total < STDIN_HIGH ? POLLIN : 0) | (outq.len ? POLLOUT : 0));
		}
		for (struct session *s = sessions; s; s = s->next) {
			if (s->orphan)
				continue;
			if (outq.len < OUTQ_HIGH && s->out >= 0)
				owner[np] = s, add_poll(pf, &np, s->out, POLLIN);
			if (outq.len < OUTQ_HIGH && s->err >= 0)
				owner[np] = s, add_poll(pf, &np, s->err, POLLIN);
			if (s->in >= 0 && s->inq.len)
				owner[np] = s, add_poll(pf, &np, s->in, POLLOUT);
		}
		if (chan < 0)
			timeout = timeout_until(chan_scan_at, now, timeout);
		else if (!chan_up)
			timeout = timeout_until(chan_probe_at, now, timeout);
		if (wl.state == W_STARTING && !wl.final)
			timeout = timeout_until(wl.restart_at, now, timeout);
		if (wl.state == W_RUNNING)
			timeout = timeout_until(wl.kill_at, now, timeout);
		if (wl.final)
			timeout = timeout_until(wl.poweroff_at, now, timeout);

		if (poll(pf, np, timeout) < 0)
			continue;

		for (int i = 0; i < np; i++) {
			short r = pf[i].revents;
			if (!r)
				continue;
			struct session *s = owner[i];
			if (pf[i].fd == sigfd) {
				struct signalfd_siginfo si;
				bool io = false;
				while (read(sigfd, &si, sizeof si) == sizeof si)
					io |= si.ssi_signo == SIGIO;
				reap();
				if (io)
					probe_channel();
			} else if (!s) { /* the channel */
				if (r & (POLLHUP | POLLERR))
					probe_channel();
				else if (r & POLLIN)
					read_channel();
				if (r & POLLOUT)
					flush_out();
			} else if (s->orphan) {
				continue;
			} else if (pf[i].fd == s->out) {
				pump_pipe(s, &s->out, F_STDOUT);
			} else if (pf[i].fd == s->err) {
				pump_pipe(s, &s->err, F_STDERR);
			} else if (pf[i].fd == s->in) {
				ssize_t w = write(s->in, s->inq.p, s->inq.len);
				if (w >= 0) {
					buf_drop(&s->inq, (size_t)w);
					stdin_total -= (size_t)w;
				} else if (errno != EAGAIN) {
					stdin_total -= s->inq.len; /* the child closed its stdin */
					buf_free(&s->inq);
					close_fd(&s->in);
				}
				if (s->in >= 0 && !s->inq.len && s->in_eof)
					close_fd(&s->in);
			}
		}
	}
}

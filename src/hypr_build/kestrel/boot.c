/*
 * Boot up to the workload: early mounts, kernel modules, the kernel command
 * line, the image root (squashfs under a tmpfs overlay), /hypr/spec and the
 * files in the image's /etc that the VM's identity decides.
 */
#include "kestrel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

struct strv dns;
char hostname[65] = "hypr";
bool probe;
struct strv spec_argv, base_env;
char *spec_workdir;
int restart_policy = R_NO, max_restarts;

void early_setup(void)
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

void load_modules(void)
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

void parse_cmdline(void)
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

void setup_rootfs(void)
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

void write_etc(void)
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

void read_spec(void)
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

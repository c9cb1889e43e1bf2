/*
 * Boot up to the workload: early mounts, kernel modules, the kernel command
 * line, the image root (its squashfs layers stacked by overlayfs under a tmpfs
 * upper layer), /hypr/spec and the files in the image's /etc that the VM's
 * identity decides.
 */
#include "kestrel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

struct strv dns;
char hostname[65] = "hypr";
bool probe, build_mode;
struct strv spec_argv, base_env;
char *spec_workdir, *spec_user;
int restart_policy = R_NO, max_restarts, stop_signal = SIGTERM, nlayers = 1;
static struct strv extra_hosts; /* "ADDRESS<TAB>NAME" lines of /hypr/spec (--add-host) */

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

void load_module_list(char *list)
{
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
}

void load_modules(void)
{
	char *list = read_file("/lib/modules/load.order");
	load_module_list(list);
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
		} else if (!strncmp(w, "hypr.layers=", 12)) {
			nlayers = atoi(w + 12);
			if (nlayers < 1 || nlayers > MAX_LAYERS)
				fatal("bad hypr.layers");
		} else if (!strncmp(w, "hypr.shares=", 12)) {
			shares_tag = strdup(w + 12);
		} else if (!strcmp(w, "hypr.probe=1")) {
			probe = true;
		} else if (!strcmp(w, "hypr.build=1")) {
			build_mode = true;
		}
	}
	free(cmd);
}

/* The disk whose virtio serial is "layer<i>" (QEMU sets it), as /dev/vdX in `dev`:
 * probe order is not attach order, the serial is what tells layers apart. */
static bool find_layer(int i, char *dev, size_t n)
{
	char want[24], path[300];
	snprintf(want, sizeof want, "layer%d", i);
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		if (strncmp(e->d_name, "vd", 2))
			continue;
		snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
		char *serial = read_file(path);
		if (serial) {
			serial[strcspn(serial, "\n")] = 0;
			if (!strcmp(serial, want)) {
				snprintf(dev, n, "/dev/%s", e->d_name);
				found = !access(dev, F_OK);
			}
			free(serial);
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* Mount every layer read-only and stack them: lowerdir=top:...:bottom. Overlayfs
 * honours the layers' own whiteouts (0:0 character devices) and opaque
 * directories (trusted.overlay.opaque=y, kept by squashfs's xattrs). */
void setup_rootfs(void)
{
	struct buf lower = { 0 };
	mkdir("/mnt", 0755);
	buf_add(&lower, "lowerdir=", 9);
	for (int i = nlayers - 1; i >= 0; i--) {
		char dev[300], dir[32];
		for (int t = 0; t < 500 && !find_layer(i, dev, sizeof dev); t++)
			usleep(10000);
		if (!find_layer(i, dev, sizeof dev)) {
			logmsg("image layer %d of %d: no disk with serial layer%d", i, nlayers, i);
			fatal("cannot find the image's layers");
		}
		snprintf(dir, sizeof dir, "/mnt/l%d", i);
		mkdir(dir, 0755);
		/* A root filesystem file given by path may be ext4: read-only, its journal
		 * left alone (the disk is read-only), under the same tmpfs upper layer. */
		if (mount(dev, dir, "squashfs", MS_RDONLY, NULL) < 0 &&
		    mount(dev, dir, "ext4", MS_RDONLY, "noload") < 0) {
			logmsg("mount %s (layer %d): %s", dev, i, strerror(errno));
			fatal("cannot mount the image");
		}
		if (i != nlayers - 1)
			buf_add(&lower, ":", 1);
		buf_add(&lower, dir, strlen(dir));
	}
	xmount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755");
	mkdir("/mnt/rw/upper", 0755);
	mkdir("/mnt/rw/work", 0755);
	mkdir(NEWROOT, 0755);
	const char *rw = ",upperdir=/mnt/rw/upper,workdir=/mnt/rw/work";
	/* A build step's layer is the upper directory as it is: no redirects or
	 * metadata-only copies that would point into the layers below. */
	const char *plain = ",redirect_dir=off,metacopy=off";
	buf_add(&lower, rw, strlen(rw));
	if (build_mode)
		buf_add(&lower, plain, strlen(plain));
	buf_add(&lower, "", 1);
	if (mount("overlay", NEWROOT, "overlay", 0, lower.p) < 0)
		fatal("cannot mount the overlay root");
	buf_free(&lower);
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
	/* mkdir(2) applies the umask: chmod what we made; an image's own /tmp stays. */
	if (!mkdir(NEWROOT "/tmp", 01777))
		chmod(NEWROOT "/tmp", 01777);
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
	n = snprintf(b, sizeof b, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
		     self, hostname);
	struct buf hosts = { 0 };
	buf_add(&hosts, b, (size_t)n);
	for (size_t i = 0; i < extra_hosts.n; i++) {
		buf_add(&hosts, extra_hosts.v[i], strlen(extra_hosts.v[i]));
		buf_add(&hosts, "\n", 1);
	}
	buf_add(&hosts, "", 1);
	write_file(NEWROOT "/etc/hosts", hosts.p);
	buf_free(&hosts);
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
		if (!strcmp(l, "mount")) {
			parse_mount(v); /* its fields are decoded one by one */
			continue;
		}
		if (!strncmp(l, "ud.", 3)) {
			parse_userdata(l + 3, v); /* so are these */
			continue;
		}
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
		else if (!strcmp(l, "user") && *v)
			spec_user = strdup(v);
		else if (!strcmp(l, "stop_signal") && atoi(v) > 0)
			stop_signal = atoi(v);
		else if (!strcmp(l, "host") && strchr(v, '\t') && !strchr(v, '\n'))
			strv_add(&extra_hosts, v);
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
	/* HOME comes from the user's passwd entry at spawn (user.c). */
}

/*
 * The VM's mounts: volumes and bind mounts (entries of the host's shared
 * folder, a virtio-fs filesystem mounted at /shares in the initramfs) and
 * tmpfs, put into the image root before the workload starts.
 *
 * Targets are resolved inside the image root with openat2(RESOLVE_IN_ROOT),
 * so an image's symlink (/var/run -> /run, or one pointing at ../../..)
 * can never place a mount outside it; missing directories are made there the
 * same way.  An empty volume mounted where the image has files is first
 * filled with them (Docker's copy-up).
 */
#include "kestrel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define SHARES "/shares"
#define SHARES_MODULES "/lib/modules/virtiofs.order"
#define MAX_MOUNTS 64
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_IN_ROOT 0x10

struct open_how_ { uint64_t flags, mode, resolve; };

struct mnt {
	char *share;   /* entry of /shares, NULL for tmpfs */
	char *target;  /* absolute path in the image root */
	bool ro, copy;
	char tmpfs_opts[96];
};

static struct mnt mounts[MAX_MOUNTS];
static int nmounts;
char *shares_tag;

/* One /hypr/spec `mount=` value: KIND \t SOURCE \t TARGET \t OPTIONS, each field
 * percent-encoded on its own (a tab inside one is %09). */
void parse_mount(char *v)
{
	char *f[4];
	for (int i = 0; i < 4; i++) {
		f[i] = strsep(&v, "\t");
		if (!f[i])
			fatal("bad mount in /hypr/spec");
		pct_decode(f[i]);
	}
	if (nmounts == MAX_MOUNTS)
		fatal("too many mounts");
	struct mnt *m = &mounts[nmounts++];
	m->target = strdup(f[2]);
	if (!strcmp(f[0], "share"))
		m->share = strdup(f[1]);
	struct buf opts = { 0 };
	buf_add(&opts, "mode=1777", 9);
	for (char *o; (o = strsep(&f[3], ","));) {
		if (!strcmp(o, "ro")) {
			m->ro = true;
		} else if (!strcmp(o, "copy")) {
			m->copy = true;
		} else if (!strncmp(o, "size=", 5) || !strncmp(o, "mode=", 5)) {
			buf_add(&opts, ",", 1);
			buf_add(&opts, o, strlen(o));
		}
	}
	snprintf(m->tmpfs_opts, sizeof m->tmpfs_opts, "%.*s", (int)opts.len, opts.p);
	buf_free(&opts);
}

static int open_in_root(int root, const char *path, int flags)
{
	struct open_how_ how = { .flags = (uint64_t)(flags | O_CLOEXEC),
				 .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* Open `path` in the root as an O_PATH fd, making what is missing: directories
 * on the way, and the last component as a directory or (for a file) an empty
 * file. */
static int make_in_root(int root, const char *path, bool file)
{
	int fd = open_in_root(root, path, O_PATH);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	char *copy = strdup(path), *slash = strrchr(copy, '/');
	*slash = 0;
	int parent = make_in_root(root, *copy ? copy : "/", false);
	const char *name = slash + 1;
	if (parent >= 0) {
		int dir = openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir >= 0) {
			if (file) {
				int f = openat(dir, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (f >= 0)
					close(f);
			} else {
				mkdirat(dir, name, 0755);
			}
			close(dir);
		}
		close(parent);
	}
	free(copy);
	return open_in_root(root, path, O_PATH);
}

static void copy_attrs(int dir, const char *name, const struct stat *st)
{
	if (fchownat(dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		logmsg("copy-up: chown %s: %s", name, strerror(errno));
	if (!S_ISLNK(st->st_mode) && fchmodat(dir, name, st->st_mode & 07777, 0) < 0)
		logmsg("copy-up: chmod %s: %s", name, strerror(errno));
	struct timespec times[2] = { st->st_atim, st->st_mtim };
	utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW);
}

static void copy_file(int from, int to, const char *name, const struct stat *st)
{
	int src = openat(from, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int dst = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	off_t left = st->st_size;
	while (src >= 0 && dst >= 0 && left > 0) {
		ssize_t n = sendfile(dst, src, NULL, left > (1 << 30) ? (1 << 30) : (size_t)left);
		if (n <= 0)
			break;
		left -= n;
	}
	if (src < 0 || dst < 0 || left > 0)
		logmsg("copy-up: %s: %s", name, strerror(errno));
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
}

/* Copy the tree under `from` into the empty directory `to`: files, links,
 * devices, modes, owners and times (hard links become copies). */
static void copy_tree(int from, int to)
{
	DIR *d = fdopendir(dup(from));
	struct dirent *e;
	if (d)
		rewinddir(d); /* a dup shares the offset: start at the top, whoever read before */
	while (d && (e = readdir(d))) {
		const char *name = e->d_name;
		struct stat st;
		if (!strcmp(name, ".") || !strcmp(name, "..") ||
		    fstatat(from, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			mkdirat(to, name, 0700);
			int sf = openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int df = openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sf >= 0 && df >= 0)
				copy_tree(sf, df);
			if (sf >= 0)
				close(sf);
			if (df >= 0)
				close(df);
		} else if (S_ISREG(st.st_mode)) {
			copy_file(from, to, name, &st);
		} else if (S_ISLNK(st.st_mode)) {
			char link[4096];
			ssize_t n = readlinkat(from, name, link, sizeof link - 1);
			if (n < 0)
				continue;
			link[n] = 0;
			symlinkat(link, to, name);
		} else {
			mknodat(to, name, st.st_mode, st.st_rdev);
		}
		copy_attrs(to, name, &st);
	}
	if (d)
		closedir(d);
}

static bool is_empty_dir(int dir)
{
	DIR *d = fdopendir(dup(dir));
	struct dirent *e;
	bool empty = true;
	if (d)
		rewinddir(d);
	while (d && empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return empty;
}

/* Fill an empty volume with what the image has at the mount's target. */
static void copy_up(int root, const struct mnt *m, const char *src)
{
	int vol = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int img = open_in_root(root, m->target, O_RDONLY | O_DIRECTORY);
	if (vol >= 0 && img >= 0 && is_empty_dir(vol) && !is_empty_dir(img)) {
		copy_tree(img, vol);
		struct stat st;
		if (!fstat(img, &st)) {
			fchown(vol, st.st_uid, st.st_gid);
			fchmod(vol, st.st_mode & 07777);
		}
	}
	if (vol >= 0)
		close(vol);
	if (img >= 0)
		close(img);
}

/* Sequential reads through virtio-fs are bound by requests in flight: a 16 MiB
 * readahead (the default is 128 KiB) doubles a large file's read rate under TCG. */
static void set_readahead(const char *mnt)
{
	struct stat st;
	char path[64];
	if (stat(mnt, &st) < 0)
		return;
	snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
		 minor(st.st_dev));
	write_file(path, "16384");
}

static void mount_shares(void)
{
	char *list = read_file(SHARES_MODULES);
	load_module_list(list);
	free(list);
	/* The device may still be probing: retry for up to 5 s. */
	for (int t = 0; mount(shares_tag, SHARES, "virtiofs", MS_NOSUID | MS_NODEV, NULL) < 0; t++) {
		if (t == 500) {
			logmsg("mount virtiofs %s: %s", shares_tag, strerror(errno));
			fatal("cannot mount the VM's shared folders");
		}
		usleep(10000);
	}
	set_readahead(SHARES);
}

static void mount_one(int root, const struct mnt *m)
{
	char src[300], dst[64];
	struct stat st = { .st_mode = S_IFDIR };
	if (m->share) {
		snprintf(src, sizeof src, SHARES "/%s", m->share);
		if (stat(src, &st) < 0) {
			logmsg("mount %s: %s: %s", m->target, src, strerror(errno));
			fatal("a mount's source is missing");
		}
	}
	int fd = make_in_root(root, m->target, !S_ISDIR(st.st_mode));
	if (fd < 0) {
		logmsg("mount %s: cannot make the target: %s", m->target, strerror(errno));
		fatal("cannot make a mount's target");
	}
	if (m->share && m->copy)
		copy_up(root, m, src);
	snprintf(dst, sizeof dst, "/proc/self/fd/%d", fd);
	int rc = m->share ? mount(src, dst, NULL, MS_BIND, NULL)
			  : mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, m->tmpfs_opts);
	close(fd);
	if (rc < 0) {
		logmsg("mount %s: %s", m->target, strerror(errno));
		fatal("cannot mount a volume");
	}
	if (!m->ro)
		return;
	/* A bind mount takes MS_RDONLY only on a remount of the new mount itself. */
	fd = open_in_root(root, m->target, O_PATH);
	snprintf(dst, sizeof dst, "/proc/self/fd/%d", fd);
	unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV;
	if (fd < 0 || mount(NULL, dst, NULL, flags, NULL) < 0)
		fatal("cannot make a mount read-only");
	close(fd);
}

void setup_mounts(void)
{
	if (!nmounts)
		return;
	if (shares_tag)
		mount_shares();
	int root = open(NEWROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fatal("cannot open the image root");
	for (int i = 0; i < nmounts; i++)
		mount_one(root, &mounts[i]);
	close(root);
}

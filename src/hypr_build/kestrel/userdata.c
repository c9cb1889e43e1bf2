/*
 * cloud-init user data from the `ud.*` lines of /hypr/spec (see the host's
 * hypr/guest/userdata.py).  An image with /usr/bin/cloud-init gets a NoCloud
 * seed in /var/lib/cloud/seed/nocloud/ and nothing else: its cloud-init does
 * the rest.  Otherwise the agent applies the common subset itself: users and
 * their SSH keys, then files, written by a child chrooted into the image root
 * (paths and symlinks resolve inside it, names in its own passwd and group),
 * then the boot scripts, run one by one before the workload, and the
 * per-instance scripts, run in order beside it.
 */
#include "kestrel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED_DIR "/var/lib/cloud/seed/nocloud"
#define CLOUD_INIT "/usr/bin/cloud-init"
#define WITH_CLOUD_INIT 3 /* the child's exit code when the image has cloud-init */

static struct strv seeds, notes, users, files, boots, onces;
static bool cloud_init;

void parse_userdata(const char *kind, char *v)
{
	struct strv *to = !strcmp(kind, "seed") ? &seeds : !strcmp(kind, "note") ? &notes
			: !strcmp(kind, "user") ? &users : !strcmp(kind, "file") ? &files
			: !strcmp(kind, "boot") ? &boots : !strcmp(kind, "once") ? &onces : NULL;
	if (to)
		strv_add(to, v);
	else
		logmsg("unknown user data line ud.%s", kind);
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
	     : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode in place; returns the length (the bytes may hold NUL). */
static size_t decode(char *s)
{
	char *o = s, *start = s;
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
	return (size_t)(o - start);
}

/* Split a line's tab-separated fields and decode them; false if there are fewer than n. */
static bool split(char *v, char **f, size_t *len, int n)
{
	char *copy = v;
	for (int i = 0; i < n; i++) {
		f[i] = strsep(&copy, "\t");
		if (!f[i])
			return false;
		len[i] = decode(f[i]);
	}
	return true;
}

static bool all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* The passwd entry of `who` (a name or a uid): uid, gid, home. Tracks the highest
 * ordinary uid in *top, for a new user's. */
static bool find_user(const char *who, uid_t *uid, gid_t *gid, char *home, size_t n, uid_t *top)
{
	char line[4096], *f[7];
	bool found = false;
	FILE *pw = fopen("/etc/passwd", "re");
	while (pw && fgets(line, sizeof line, pw)) {
		if (colon_fields(line, f, 7) < 7)
			continue;
		uid_t u = (uid_t)strtoul(f[2], NULL, 10);
		if (top && u >= *top && u < 60000)
			*top = u + 1;
		if (!found && (all_digits(who) ? u == strtoul(who, NULL, 10) : !strcmp(f[0], who))) {
			found = true;
			*uid = u;
			*gid = (gid_t)strtoul(f[3], NULL, 10);
			if (home)
				snprintf(home, n, "%s", f[5]);
		}
	}
	if (pw)
		fclose(pw);
	return found;
}

static bool find_group(const char *who, gid_t *gid)
{
	char line[4096], *f[4];
	bool found = false;
	FILE *gr = fopen("/etc/group", "re");
	while (!found && gr && fgets(line, sizeof line, gr))
		if (colon_fields(line, f, 4) >= 3 &&
		    (all_digits(who) ? strtoul(f[2], NULL, 10) == strtoul(who, NULL, 10)
				     : !strcmp(f[0], who))) {
			found = true;
			*gid = (gid_t)strtoul(f[2], NULL, 10);
		}
	if (gr)
		fclose(gr);
	return found;
}

static void append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, strlen(line)) < 0)
		logmsg("user data: %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void parent_dirs(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir_p(dir);
	}
}

/* Write (or append) a file whole, then give it its owner and mode (in that order:
 * chown clears set-id bits). */
static void put_file(const char *path, const char *data, size_t n, bool append, mode_t mode,
		     uid_t uid, gid_t gid)
{
	parent_dirs(path);
	if (!append)
		unlink(path); /* never write through an image's symlink */
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0600);
	bool ok = fd >= 0;
	for (size_t done = 0; ok && done < n;) {
		ssize_t w = write(fd, data + done, n - done);
		ok = w > 0;
		done += ok ? (size_t)w : 0;
	}
	if (ok && (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0))
		ok = false;
	if (!ok)
		logmsg("user data: write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* "USER[:GROUP]" to ids; an unknown name is logged and stands for root. */
static void owner_ids(char *owner, uid_t *uid, gid_t *gid)
{
	char *group = strchr(owner, ':');
	if (group)
		*group++ = 0;
	*uid = 0;
	*gid = 0;
	if (!find_user(owner, uid, gid, NULL, 0, NULL)) {
		if (all_digits(owner))
			*uid = (uid_t)strtoul(owner, NULL, 10);
		else
			logmsg("user data: no user %s in the image, root owns the file", owner);
	}
	if (group && !find_group(group, gid))
		logmsg("user data: no group %s in the image", group);
}

/* ud.user: name, uid, home, shell, gecos, keys ("\n"-terminated). */
static void apply_user(char *v)
{
	char *f[6], home[1024], line[2048];
	size_t len[6];
	if (!split(v, f, len, 6))
		return;
	uid_t uid, top = 1000;
	gid_t gid;
	if (!find_user(f[0], &uid, &gid, home, sizeof home, &top)) {
		uid = *f[1] ? (uid_t)strtoul(f[1], NULL, 10) : top;
		if (!find_group(f[0], &gid)) {
			gid = uid;
			snprintf(line, sizeof line, "%s:x:%u:\n", f[0], (unsigned)gid);
			append_line("/etc/group", line);
		}
		snprintf(home, sizeof home, "%s", *f[2] ? f[2] : "");
		if (!*home)
			snprintf(home, sizeof home, "/home/%s", f[0]);
		snprintf(line, sizeof line, "%s:x:%u:%u:%s:%s:%s\n", f[0], (unsigned)uid, (unsigned)gid,
			 f[4], home, *f[3] ? f[3] : "/bin/sh");
		append_line("/etc/passwd", line);
		if (!access("/etc/shadow", F_OK)) { /* locked: keys only, as cloud-init's default */
			snprintf(line, sizeof line, "%s:!:%ld:0:99999:7:::\n", f[0],
				 (long)(time(NULL) / 86400));
			append_line("/etc/shadow", line);
		}
		mkdir_p(home);
		if (chown(home, uid, gid) < 0)
			logmsg("user data: chown %s: %s", home, strerror(errno));
	}
	if (!len[5])
		return;
	char path[1100];
	snprintf(path, sizeof path, "%s/.ssh", home);
	mkdir_p(path);
	if (chown(path, uid, gid) < 0 || chmod(path, 0700) < 0)
		logmsg("user data: %s: %s", path, strerror(errno));
	snprintf(path, sizeof path, "%s/.ssh/authorized_keys", home);
	/* Keep the image's keys; add the ones it lacks. */
	char *old = read_file(path);
	struct buf keys = { 0 };
	if (old)
		buf_add(&keys, old, strlen(old));
	if (keys.len && keys.p[keys.len - 1] != '\n')
		buf_add(&keys, "\n", 1);
	for (char *save = NULL, *k = strtok_r(f[5], "\n", &save); k; k = strtok_r(NULL, "\n", &save))
		if (!old || !strstr(old, k)) {
			buf_add(&keys, k, strlen(k));
			buf_add(&keys, "\n", 1);
		}
	free(old);
	put_file(path, keys.p, keys.len, false, 0600, uid, gid);
	buf_free(&keys);
}

/* ud.file: path, owner, mode (octal), append (0/1), content. */
static void apply_file(char *v)
{
	char *f[5];
	size_t len[5];
	uid_t uid;
	gid_t gid;
	if (!split(v, f, len, 5))
		return;
	owner_ids(f[1], &uid, &gid);
	put_file(f[0], f[4], len[4], *f[3] == '1', (mode_t)strtoul(f[2], NULL, 8), uid, gid);
}

/* ud.boot and ud.once: path, script; written 0700, run later by the agent. */
static void write_script(char *v)
{
	char *f[2];
	size_t len[2];
	if (split(v, f, len, 2))
		put_file(f[0], f[1], len[1], false, 0700, 0, 0);
}

/* In the chrooted child: the seed if the image has cloud-init, else the subset. */
static noreturn void apply_in_root(void)
{
	umask(022);
	if (chroot(NEWROOT) < 0 || chdir("/") < 0)
		_exit(1);
	if (!access(CLOUD_INIT, F_OK)) {
		mkdir_p(SEED_DIR);
		for (size_t i = 0; i < seeds.n; i++) {
			char *f[2], path[300];
			size_t len[2];
			if (!split(seeds.v[i], f, len, 2) || strchr(f[0], '/'))
				continue;
			snprintf(path, sizeof path, SEED_DIR "/%s", f[0]);
			put_file(path, f[1], len[1], false, 0600, 0, 0);
		}
		_exit(WITH_CLOUD_INIT);
	}
	for (size_t i = 0; i < users.n; i++)
		apply_user(users.v[i]);
	for (size_t i = 0; i < files.n; i++)
		apply_file(files.v[i]);
	for (size_t i = 0; i < boots.n; i++)
		write_script(boots.v[i]);
	for (size_t i = 0; i < onces.n; i++)
		write_script(onces.v[i]);
	_exit(0);
}

/* Run a script written by write_script (its path is the line's first field) and wait. */
static void run_script(const char *line)
{
	char path[4096];
	snprintf(path, sizeof path, "%.*s", (int)strcspn(line, "\t"), line);
	decode(path);
	char *argv[] = { path, NULL };
	int st;
	pid_t pid = spawn(argv, base_env.v, "/", NULL, devnull, console, console, true);
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		logmsg("user data: cannot run %s: %s", path, strerror(errno));
	else if (!WIFEXITED(st) || WEXITSTATUS(st))
		logmsg("user data: %s failed (status %d)", path,
		       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

void apply_userdata(void)
{
	if (!seeds.n)
		return;
	pid_t pid = fork();
	if (pid == 0)
		apply_in_root();
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) < 0) {
		logmsg("user data: cannot fork: %s", strerror(errno));
		return;
	}
	cloud_init = WIFEXITED(st) && WEXITSTATUS(st) == WITH_CLOUD_INIT;
	if (cloud_init) {
		logmsg("user data: the image has cloud-init, NoCloud seed in " SEED_DIR);
		return;
	}
	for (size_t i = 0; i < notes.n; i++) {
		decode(notes.v[i]);
		logmsg("user data: %s", notes.v[i]);
	}
	for (size_t i = 0; i < boots.n; i++)
		run_script(boots.v[i]);
}

/* The per-instance scripts, in order, in a child of their own beside the workload. */
void start_userdata_once(void)
{
	if (cloud_init || !onces.n || fork() != 0)
		return;
	for (size_t i = 0; i < onces.n; i++)
		run_script(onces.v[i]);
	_exit(0);
}

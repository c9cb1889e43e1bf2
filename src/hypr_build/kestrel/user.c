/*
 * Docker's -u USER[:GROUP] in a spawned child, already chrooted into the image:
 * names and ids resolved from the image's own /etc/passwd and /etc/group
 * (files only: the image's NSS configuration is not ours to load), the user's
 * supplementary groups, HOME from passwd.  A numeric uid need not exist.
 */
#include "kestrel.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GROUPS 64

static bool numeric(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* A passwd or group line split at ':' in place into at most n fields; returns how many. */
int colon_fields(char *line, char **f, int n)
{
	int i = 0;
	line[strcspn(line, "\n")] = 0;
	while (i < n && line) {
		f[i++] = line;
		line = strchr(line, ':');
		if (line)
			*line++ = 0;
	}
	return i;
}

static bool in_list(char *members, const char *name)
{
	for (char *save = NULL, *m = strtok_r(members, ",", &save); m;
	     m = strtok_r(NULL, ",", &save))
		if (!strcmp(m, name))
			return true;
	return false;
}

/* Returns 0, or prints Docker's message to fd 2 and returns -1. */
int switch_user(const char *spec, struct strv *env)
{
	char want[256], home[1024] = "/", name[256] = "";
	snprintf(want, sizeof want, "%s", spec ? spec : "0");
	char *group = strchr(want, ':');
	if (group)
		*group++ = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	bool found = false;
	char line[4096], *f[7];
	FILE *pw = fopen("/etc/passwd", "re");
	while (pw && !found && fgets(line, sizeof line, pw)) {
		if (colon_fields(line, f, 7) < 7)
			continue;
		if (numeric(want) ? (uid_t)strtoul(f[2], NULL, 10) == strtoul(want, NULL, 10)
				  : !strcmp(f[0], want)) {
			found = true;
			uid = (uid_t)strtoul(f[2], NULL, 10);
			gid = (gid_t)strtoul(f[3], NULL, 10);
			snprintf(name, sizeof name, "%s", f[0]);
			snprintf(home, sizeof home, "%s", f[5]);
		}
	}
	if (pw)
		fclose(pw);
	if (!found && !numeric(want)) {
		dprintf(2, "unable to find user %s: no matching entries in passwd file\n", want);
		return -1;
	}
	if (!found)
		uid = (uid_t)strtoul(want, NULL, 10);
	if (group && numeric(group))
		gid = (gid_t)strtoul(group, NULL, 10);
	gid_t groups[MAX_GROUPS];
	int ngroups = 0;
	bool group_found = !group || numeric(group);
	FILE *gr = fopen("/etc/group", "re");
	while (gr && fgets(line, sizeof line, gr)) {
		if (colon_fields(line, f, 4) < 4)
			continue;
		gid_t g = (gid_t)strtoul(f[2], NULL, 10);
		if (group && !group_found && !strcmp(f[0], group)) {
			gid = g;
			group_found = true;
		}
		if (*name && ngroups < MAX_GROUPS && in_list(f[3], name))
			groups[ngroups++] = g;
	}
	if (gr)
		fclose(gr);
	if (!group_found) {
		dprintf(2, "unable to find group %s: no matching entries in group file\n", group);
		return -1;
	}
	if (ngroups < MAX_GROUPS)
		groups[ngroups++] = gid;
	if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		dprintf(2, "kestrel: cannot become %s: %s\n", spec ? spec : "root", strerror(errno));
		return -1;
	}
	char h[1100];
	snprintf(h, sizeof h, "HOME=%s", found ? home : "/");
	env_set(env, h, false);
	return 0;
}

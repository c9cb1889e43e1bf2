/*
 * Build mode's help for the host: a build step's layer is the overlay's upper
 * directory, read by busybox tar; tar cannot carry the xattr that marks an
 * opaque directory (trusted.overlay.opaque=y: nothing below shows through), so
 * `/init --opaque-dirs DIR` lists them, one path relative to DIR per line.
 */
#define _GNU_SOURCE
#include "kestrel.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

static size_t root_len;

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	char v[4];
	if (type == FTW_D && lgetxattr(path, "trusted.overlay.opaque", v, sizeof v) == 1 &&
	    v[0] == 'y' && strlen(path) > root_len)
		printf("%s\n", path + root_len + 1);
	return 0;
}

int list_opaque_dirs(const char *root)
{
	root_len = strlen(root);
	if (nftw(root, visit, 32, FTW_PHYS) < 0) {
		perror("nftw");
		return 1;
	}
	return fflush(stdout) ? 1 : 0;
}

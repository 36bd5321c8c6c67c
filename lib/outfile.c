/* outfile.c: see outfile.h. */
#define _GNU_SOURCE
#include "outfile.h"
#include "bt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void closed(struct bt_outfile *o)
{
	o->fp = NULL;
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
}

int bt_outfile_open(struct bt_outfile *o, const char *path)
{
	struct stat sb;
	mode_t um;
	int fd, have;

	memset(o, 0, sizeof *o);
	if (strcmp(path, "-") == 0) {
		o->fp = stdout;
		return BT_OK;
	}
	/* A symbolic link is followed, so that the file it names is replaced and the link
	 * stays (a dangling one is replaced itself). */
	if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
		o->path = realpath(path, NULL);
	if (!o->path && !(o->path = strdup(path)))
		return bt_error(BT_ERR_NOMEM, "out of memory");
	have = stat(o->path, &sb) == 0;
	if (have && !S_ISREG(sb.st_mode)) {
		if (S_ISDIR(sb.st_mode)) {
			closed(o);
			return bt_error(BT_ERR_INVALID, "'%s' is a directory", path);
		}
		if (!(o->fp = fopen(o->path, "wb"))) {
			int st = bt_error_errno("cannot open '%s'", path);
			closed(o);
			return st;
		}
		return BT_OK;
	}
	if (asprintf(&o->tmp, "%s.tmp.XXXXXX", o->path) < 0) {
		o->tmp = NULL;
		closed(o);
		return bt_error(BT_ERR_NOMEM, "out of memory");
	}
	if ((fd = mkstemp(o->tmp)) < 0) {
		int st = bt_error_errno("cannot create '%s'", path);
		closed(o);
		return st;
	}
	/* mkstemp makes 0600: a file replaced keeps its mode, a new one gets the umask's. */
	um = umask(0);
	umask(um);
	if (fchmod(fd, have ? sb.st_mode & 07777 : 0666 & ~um) != 0 || !(o->fp = fdopen(fd, "wb"))) {
		int st = bt_error_errno("%s", o->tmp);
		close(fd);
		unlink(o->tmp);
		closed(o);
		return st;
	}
	return BT_OK;
}

const char *bt_outfile_name(const struct bt_outfile *o)
{
	return o->tmp ? o->tmp : o->path ? o->path : "<stdout>";
}

int bt_outfile_commit(struct bt_outfile *o, int sync)
{
	int st = BT_OK;

	if (!o->fp)
		return BT_OK;
	if (fflush(o->fp) != 0 || ferror(o->fp) || (o->tmp && sync && fsync(fileno(o->fp)) != 0))
		st = bt_error_errno("cannot write '%s'", bt_outfile_name(o));
	if (o->fp == stdout) {
		closed(o);
		return st;
	}
	if (fclose(o->fp) != 0 && st == BT_OK)
		st = bt_error_errno("cannot write '%s'", bt_outfile_name(o));
	if (st == BT_OK && o->tmp && rename(o->tmp, o->path) != 0)
		st = bt_error_errno("cannot rename '%s' to '%s'", o->tmp, o->path);
	if (st < 0 && o->tmp)
		unlink(o->tmp);
	else if (o->tmp && sync)
		st = bt_outfile_sync_dir(o->path);
	closed(o);
	return st;
}

int bt_outfile_sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, st = BT_OK;

	/* "a/b" -> "a", "/b" -> "/", "b" -> "." */
	if (!slash)
		dir = strdup(".");
	else
		dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (!dir)
		return bt_error(BT_ERR_NOMEM, "out of memory");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		st = bt_error_errno("cannot open directory '%s'", dir);
	} else {
		if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS && errno != EBADF)
			st = bt_error_errno("cannot sync directory '%s'", dir);
		close(fd);
	}
	free(dir);
	return st;
}

void bt_outfile_abort(struct bt_outfile *o)
{
	if (o->fp == stdout)
		fflush(stdout);
	else if (o->fp)
		fclose(o->fp);
	if (o->fp && o->tmp)
		unlink(o->tmp);
	closed(o);
}

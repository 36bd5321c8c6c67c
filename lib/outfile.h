/* outfile.h: an output file that appears whole or not at all.
 *
 * A regular file (new or existing) is written under a temporary name beside it
 * (NAME.tmp.XXXXXX, mode 0666 less the umask) and renamed over NAME on commit, after an
 * optional fsync (and, with it, an fsync of the directory after the rename, so that the
 * new name survives a crash too); abort removes the temporary file, so a failure leaves
 * NAME as it was.
 * A file replaced keeps its permission bits; a symbolic link is followed (the file it
 * names is replaced, the link stays).
 * "-" is standard output. A NAME that exists and is not a regular file (/dev/null,
 * /dev/stdout, a FIFO, a terminal) is written in place: renaming over it would replace a
 * device or pipe with a file.
 */
#ifndef BT_OUTFILE_H
#define BT_OUTFILE_H

#include <stdio.h>

struct bt_outfile {
	FILE *fp;      /* where to write; NULL when closed */
	char *path;    /* the name asked for; NULL for standard output */
	char *tmp;     /* the temporary name; NULL when written in place */
};

/* Opens path for writing ("wb"); on failure o is left closed. */
int bt_outfile_open(struct bt_outfile *o, const char *path);

/* The name to put in messages about writing: the temporary name, the name, or
 * "<stdout>". */
const char *bt_outfile_name(const struct bt_outfile *o);

/* Flushes and, for a temporary file, fsyncs (when sync is set), closes and renames it
 * over the name. Standard output is flushed, not closed. On failure the temporary file is
 * removed. o is closed afterwards either way. */
int bt_outfile_commit(struct bt_outfile *o, int sync);

/* Closes o and removes its temporary file; safe on a closed or zeroed o. */
void bt_outfile_abort(struct bt_outfile *o);

/* fsyncs the directory that holds path, so that a rename or link into it is durable. File
 * systems that cannot sync a directory (EINVAL, EROFS) are not an error. */
int bt_outfile_sync_dir(const char *path);

#endif

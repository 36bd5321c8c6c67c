/* tool.h: what the bt-* commands share and the library must not do: printing messages
 * and progress, parsing option values, reading small text files named on the command
 * line. Each tool sets tool_name first thing in main. */
#ifndef BT_TOOL_H
#define BT_TOOL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

extern const char *tool_name;

/* "bt-NAME: message" on stderr. */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "bt-NAME: <library detail or status text>" on stderr; returns the exit code 1. */
int tool_fail(int status);
/* A usage error: message, then "Try 'bt-NAME --help'." and exit code 2. */
int tool_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict number parsing of option values: the whole string must be a number in range.
 * On failure they print a usage error naming the option and return -1. */
int tool_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v);
int tool_parse_int(const char *opt, const char *s, int min, int max, int *v);
int tool_parse_double(const char *opt, const char *s, double min, double max, double *v);
/* "a" or "a,b,c" into v[3] (one value is used for every channel); nonzero refuses 0. */
int tool_parse_triple(const char *opt, const char *s, float v[3], int nonzero);
/* 1 when s names a device the way --device takes it: cpu, cuda or cuda:N. Whether that
 * device exists is for bt_backend_open to say. */
int tool_device_name(const char *s);

/* Non-empty lines of a text file (trailing CR/LF removed). Returns a library status. */
int tool_read_lines(const char *path, char ***lines, uint32_t *n);
void tool_free_lines(char **lines, uint32_t n);

/* SIGINT and SIGTERM set tool_interrupted (to the signal's number) instead of killing the tool, without
 * SA_RESTART, so that a read blocked on a pipe returns and the tool can remove its partial
 * output. The library polls the flag through its cancel pointers. */
extern volatile sig_atomic_t tool_interrupted;
void tool_catch_signals(void);

/* Number of online CPUs (at least 1). */
int tool_ncpus(void);
double tool_now(void);

/* A one-line progress bar on stderr, drawn only when stderr is a terminal, at most ten
 * times a second; tool_progress_end clears it. */
void tool_progress(uint64_t done, uint64_t total, const char *extra);
void tool_progress_end(void);

/* "12.3 MB" style sizes (decimal units). */
const char *tool_bytes(uint64_t n, char *buf, size_t len);

#endif

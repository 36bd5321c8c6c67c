/* tool.c: the helpers declared in tool.h, linked into every bt-* command. */
#define _GNU_SOURCE
#include "tool.h"
#include "bt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *tool_name = "bt";
volatile sig_atomic_t tool_interrupted;

static void on_signal(int sig)
{
	tool_interrupted = sig;
}

void tool_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void tool_err(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", tool_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int tool_fail(int status)
{
	const char *m = bt_errmsg();
	tool_err("%s", m[0] ? m : bt_strerror(status));
	return 1;
}

int tool_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", tool_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", tool_name);
	return 2;
}

int tool_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	char *end;
	unsigned long long x;
	errno = 0;
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		goto bad;
	x = strtoull(s, &end, 10);
	if (errno || *end || x < min || x > max)
		goto bad;
	*v = x;
	return 0;
bad:
	tool_usage_error("invalid value '%s' for %s (expected an integer from %llu to %llu)", s, opt,
			 (unsigned long long)min, (unsigned long long)max);
	return -1;
}

int tool_parse_int(const char *opt, const char *s, int min, int max, int *v)
{
	char *end;
	long x;
	errno = 0;
	if (!*s || *s == ' ')
		goto bad;
	x = strtol(s, &end, 10);
	if (errno || *end || x < min || x > max)
		goto bad;
	*v = (int)x;
	return 0;
bad:
	tool_usage_error("invalid value '%s' for %s (expected an integer from %d to %d)", s, opt, min, max);
	return -1;
}

int tool_parse_double(const char *opt, const char *s, double min, double max, double *v)
{
	char *end;
	double x;
	errno = 0;
	if (!*s || *s == ' ')
		goto bad;
	x = strtod(s, &end);
	if (errno || *end || !isfinite(x) || x < min || x > max)
		goto bad;
	*v = x;
	return 0;
bad:
	tool_usage_error("invalid value '%s' for %s (expected a number from %g to %g)", s, opt, min, max);
	return -1;
}

int tool_read_lines(const char *path, char ***lines, uint32_t *n)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL, **v = NULL;
	size_t cap = 0;
	uint32_t cnt = 0, vcap = 0;
	ssize_t len;
	int st = BT_OK;

	*lines = NULL;
	*n = 0;
	if (!fp)
		return bt_error_errno("cannot open '%s'", path);
	while ((len = getline(&line, &cap, fp)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (len == 0)
			continue;
		if (cnt == vcap) {
			char **g = realloc(v, (vcap ? vcap * 2 : 64) * sizeof *v);
			if (!g) {
				st = bt_error(BT_ERR_NOMEM, "%s: out of memory", path);
				goto out;
			}
			v = g;
			vcap = vcap ? vcap * 2 : 64;
		}
		if (!(v[cnt] = strdup(line))) {
			st = bt_error(BT_ERR_NOMEM, "%s: out of memory", path);
			goto out;
		}
		cnt++;
	}
	if (ferror(fp))
		st = bt_error_errno("%s", path);
	else if (cnt == 0)
		st = bt_error(BT_ERR_FORMAT, "%s: no class names in it", path);
out:
	free(line);
	fclose(fp);
	if (st < 0) {
		tool_free_lines(v, cnt);
		return st;
	}
	*lines = v;
	*n = cnt;
	return BT_OK;
}

void tool_free_lines(char **lines, uint32_t n)
{
	for (uint32_t i = 0; lines && i < n; i++)
		free(lines[i]);
	free(lines);
}

int tool_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

double tool_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double progress_last;
static int progress_shown;

void tool_progress(uint64_t done, uint64_t total, const char *extra)
{
	double now;
	int width = 30, fill;
	if (!isatty(2))
		return;
	now = tool_now();
	if (done < total && now - progress_last < 0.1)
		return;
	progress_last = now;
	fill = total ? (int)((double)done / (double)total * width) : 0;
	fprintf(stderr, "\r%s: [%.*s%*s] %3d%% %llu/%llu %s\033[K", tool_name, fill,
		"##############################", width - fill, "",
		total ? (int)(100.0 * (double)done / (double)total) : 0, (unsigned long long)done,
		(unsigned long long)total, extra ? extra : "");
	progress_shown = 1;
}

void tool_progress_end(void)
{
	if (progress_shown)
		fprintf(stderr, "\r\033[K");
	progress_shown = 0;
}

const char *tool_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	double x = (double)n;
	int u = 0;
	while (x >= 1000 && u < 5) {
		x /= 1000;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", x, unit[u]);
	return buf;
}

int tool_device_name(const char *s)
{
	if (!strcmp(s, "cpu") || !strcmp(s, "cuda"))
		return 1;
	if (strncmp(s, "cuda:", 5) || !s[5] || strlen(s + 5) > 4)
		return 0;
	for (const char *p = s + 5; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

int tool_parse_triple(const char *opt, const char *s, float v[3], int nonzero)
{
	char buf[256], *tok, *save = NULL;
	double x[3];
	int n = 0;
	if (strlen(s) >= sizeof buf)
		return tool_usage_error("%s: value too long", opt), -1;
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == 3)
			return tool_usage_error("%s takes one or three numbers, not '%s'", opt, s), -1;
		if (tool_parse_double(opt, tok, -1e6, 1e6, &x[n]) < 0)
			return -1;
		if (nonzero && x[n] == 0)
			return tool_usage_error("%s: values must not be 0", opt), -1;
		n++;
	}
	if (n != 1 && n != 3)
		return tool_usage_error("%s takes one or three numbers, not '%s'", opt, s), -1;
	for (int i = 0; i < 3; i++)
		v[i] = (float)x[n == 1 ? 0 : i];
	return 0;
}

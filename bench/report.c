// SPDX-License-Identifier: MIT
/*
 * bench/report.c - median/min/max of repetitions, ratios to same-run
 * baselines, and the table / CSV / JSON outputs shared by all benchmarks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

void report_init(struct report *r, const char *benchmark, const char **baselines)
{
	memset(r, 0, sizeof(*r));
	r->benchmark = benchmark;
	r->baselines = baselines;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void report_add(struct report *r, const struct result *res)
{
	double s[REPORT_MAX_REPS];
	struct result *d;
	int n = res->reps;

	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 64;
		r->res = realloc(r->res, r->cap * sizeof(*r->res));
		if (!r->res)
			abort();
	}
	d = &r->res[r->n++];
	*d = *res;
	memcpy(s, res->samples, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	d->min = s[0];
	d->max = s[n - 1];
	d->value = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double report_ratio(const struct report *r, const struct result *res, const char *baseline)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		const struct result *b = &r->res[i];

		if (!strcmp(b->group, res->group) && b->size == res->size &&
		    !strcmp(b->transport, baseline) && b->value > 0)
			return res->value / b->value;
	}
	return 0;
}

static const char *human_size(size_t s, char *buf, size_t len)
{
	if (s >= (1u << 20) && s % (1u << 20) == 0)
		snprintf(buf, len, "%zuM", s >> 20);
	else if (s >= 1024 && s % 1024 == 0)
		snprintf(buf, len, "%zuK", s >> 10);
	else
		snprintf(buf, len, "%zu", s);
	return buf;
}

void report_print_table(const struct report *r, FILE *out)
{
	const char **b;
	char sz[32], spread[32];
	size_t i;

	fprintf(out, "\n%-12s %6s %-18s %12s %-7s %8s", "test", "size", "transport", "median",
		"unit", "spread");
	for (b = r->baselines; b && *b; b++)
		fprintf(out, " %14.14s", *b);
	fputc('\n', out);
	for (i = 0; i < r->n; i++) {
		const struct result *x = &r->res[i];

		if (i && strcmp(x->group, r->res[i - 1].group) &&
		    strncmp(x->group, r->res[i - 1].group, 4))
			fputc('\n', out);
		snprintf(spread, sizeof(spread), "%.0f%%",
			 x->value > 0 ? 100.0 * (x->max - x->min) / x->value : 0.0);
		fprintf(out, "%-12s %6s %-18s %12.3f %-7s %8s", x->group,
			human_size(x->size, sz, sizeof(sz)), x->transport, x->value, x->unit,
			spread);
		for (b = r->baselines; b && *b; b++) {
			double q = report_ratio(r, x, *b);

			if (q > 0 && strcmp(x->transport, *b))
				fprintf(out, " %13.3gx", q);
			else
				fprintf(out, " %14s", "-");
		}
		fputc('\n', out);
	}
	fprintf(out, "\nratios: value / baseline of the same test and size, same run;\n"
		     "spread = (max-min)/median over repetitions\n");
}

int report_write_csv(const struct report *r, const char *path)
{
	FILE *f = fopen(path, "w");
	const char **b;
	size_t i;

	if (!f)
		return -1;
	fprintf(f,
		"benchmark,group,transport,size,unit,median,min,max,repetitions,higher_is_better");
	for (b = r->baselines; b && *b; b++)
		fprintf(f, ",ratio_%s", *b);
	fputc('\n', f);
	for (i = 0; i < r->n; i++) {
		const struct result *x = &r->res[i];

		fprintf(f, "%s,%s,%s,%zu,%s,%.6g,%.6g,%.6g,%d,%d", r->benchmark, x->group,
			x->transport, x->size, x->unit, x->value, x->min, x->max, x->reps,
			x->higher_is_better);
		for (b = r->baselines; b && *b; b++)
			fprintf(f, ",%.6g", report_ratio(r, x, *b));
		fputc('\n', f);
	}
	return fclose(f);
}

int report_write_json(const struct report *r, const char *path)
{
	FILE *f = fopen(path, "w");
	struct utsname u;
	char when[64];
	time_t now = time(NULL);
	const char **b;
	size_t i;
	int k;

	if (!f)
		return -1;
	uname(&u);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	fprintf(f, "{\n  \"schema\": \"circnet-bench/v1\",\n  \"benchmark\": \"%s\",\n",
		r->benchmark);
	fprintf(f,
		"  \"time\": \"%s\",\n  \"host\": {\"kernel\": \"%s\", \"machine\": \"%s\", "
		"\"cpus\": %ld},\n",
		when, u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN));
	fprintf(f, "  \"config\": \"%s\",\n  \"results\": [\n", r->config);
	for (i = 0; i < r->n; i++) {
		const struct result *x = &r->res[i];
		bool first = true;

		fprintf(f,
			"    {\"name\": \"%s/%s/%zu\", \"group\": \"%s\", \"transport\": \"%s\", "
			"\"size\": %zu, \"unit\": \"%s\", \"value\": %.6g, \"min\": %.6g, "
			"\"max\": %.6g, \"repetitions\": %d, \"higher_is_better\": %s, "
			"\"samples\": [",
			x->group, x->transport, x->size, x->group, x->transport, x->size, x->unit,
			x->value, x->min, x->max, x->reps, x->higher_is_better ? "true" : "false");
		for (k = 0; k < x->reps; k++)
			fprintf(f, "%s%.6g", k ? ", " : "", x->samples[k]);
		fprintf(f, "], \"ratios\": {");
		for (b = r->baselines; b && *b; b++) {
			double q = report_ratio(r, x, *b);

			if (q > 0 && strcmp(x->transport, *b)) {
				fprintf(f, "%s\"%s\": %.6g", first ? "" : ", ", *b, q);
				first = false;
			}
		}
		fprintf(f, "}}%s\n", i + 1 < r->n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	return fclose(f);
}

void report_free(struct report *r)
{
	free(r->res);
	r->res = NULL;
	r->n = r->cap = 0;
}

/* cpu.c: the CPU backend's convolution, batch norm, pooling and fully connected kernels on
 * oneDNN 2.6, behind the plain NHWC interface of cpu.h, in float32 or bfloat16 (the
 * descriptor's dtype picks oneDNN's data type for activations and weights; weight gradients,
 * biases and batch-norm parameters stay float32).
 *
 * Creating a oneDNN primitive costs milliseconds (it picks and JIT-compiles a kernel), so each
 * one is built once per (kind, shape) and kept in a small open-addressing hash table in the
 * context, together with the memory objects it executes on; a call looks the entry up, points
 * those memories at the caller's buffers with dnnl_memory_set_data_handle and executes. Nothing
 * is allocated per call: oneDNN's scratchpad (user mode), layout-changed copies of arguments and
 * the temporaries of "add into" gradients all live in one scratch buffer owned by the context,
 * grown only when a new entry needs more. Gradients that cpu.h says to ADD (dw, db, dgamma,
 * dbeta) are computed into scratch and summed into the caller's buffer by a reorder with a sum
 * post-op, since oneDNN's backward primitives overwrite their outputs. The fully connected
 * layer is a plain dnnl_sgemm, whose beta = 1 gives "add into" for free.
 */
#include "cpu.h"
#include "bt.h"
#include "mixed.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

/* Convolution layouts: 0 runs on the caller's NHWC / OHWI directly, 1 keeps activations NHWC
 * and lets oneDNN pick the weights' layout (one small reorder per call), 2 lets it pick every
 * layout (reorders of activations in and out). oneDNN 2.6 has no JIT kernel for plain OHWI
 * weights, so 0 falls to its reference loops (orders of magnitude slower); on AVX-512 with 2
 * threads, 1 beat 2 by 1.3x to 4x on ResNet-50, CIFAR and depthwise 3x3 shapes, fwd and bwd. */
#ifndef BT_CPU_CONV_ANY
#define BT_CPU_CONV_ANY 1
#endif

enum bt_prim_kind {
	K_CONV_FWD = 1,
	K_CONV_BWD_DATA,
	K_CONV_BWD_W,
	K_BN_FWD_TRAIN,
	K_BN_FWD_INFER,
	K_BN_BWD,
	K_POOL_FWD,
	K_POOL_BWD,
};

enum { ARG_IN, ARG_OUT, ARG_ACC }; /* ACC: computed into scratch, then added to the user's */

#define MAX_ARGS 10
#define KEY_INTS 24

struct bt_arg {
	int id, mode;
	dnnl_memory_t user;        /* pointed at the caller's buffer on each call */
	dnnl_memory_t inner;       /* NULL: the primitive uses user directly */
	dnnl_primitive_t reorder;  /* user -> inner (IN) or inner -> user (OUT, ACC) */
	size_t off;                /* inner's offset in the scratch buffer */
};

struct bt_entry {
	int key[KEY_INTS];         /* key[0] is the kind, then the desc's bytes */
	dnnl_primitive_desc_t pd, hint;
	dnnl_primitive_t prim;
	int nargs;
	struct bt_arg a[MAX_ARGS];
	dnnl_exec_arg_t ex[MAX_ARGS + 1];
	dnnl_memory_t scratchpad;
	size_t spad_bytes;         /* scratchpad, rounded; inner memories follow it */
	size_t ws_bytes;           /* pooling workspace */
};

struct bt_cpu {
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	struct bt_entry **tab;     /* open addressing, cap a power of two, at most half full */
	size_t cap, count;
	int misses;
	char *scratch;             /* 64-byte aligned */
	size_t scratch_bytes;
	float *aux;                /* batch norm variance, (C) */
	size_t aux_floats;
	float *fcb;                /* a bfloat16 fc layer's operands in float32 */
	size_t fcb_floats;
	int wino_min;              /* Winograd from this many channels; 0: never (BT_CPU_WINO) */
	int prefer_jit;            /* the plain jit kernel for narrow layers (BT_CPU_JIT) */
	char desc[160];
};

/* An argument as the caller sees it: its dnnl id, direction and the caller's layout (NULL:
 * take whatever the primitive reports, e.g. the workspace or the batch statistics). */
struct bt_argspec {
	int id, mode;
	const dnnl_memory_desc_t *md;
};

static int dnnl_fail(dnnl_status_t s, const char *what)
{
	return bt_error(BT_ERR_UNSUPPORTED, "oneDNN: %s: %s", what, dnnl_status2str(s));
}

#define DN(call, what)                                                  \
	do {                                                            \
		dnnl_status_t s_ = (call);                              \
		if (s_ != dnnl_success) {                               \
			rc = dnnl_fail(s_, what);                       \
			goto out;                                       \
		}                                                       \
	} while (0)

static size_t round64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

/* ---- context ---------------------------------------------------------------------------- */

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41: return "SSE4.1";
	case dnnl_cpu_isa_avx: return "AVX";
	case dnnl_cpu_isa_avx2: return "AVX2";
	case dnnl_cpu_isa_avx2_vnni: return "AVX2 VNNI";
	case dnnl_cpu_isa_avx512_mic: return "AVX-512 MIC";
	case dnnl_cpu_isa_avx512_mic_4ops: return "AVX-512 MIC 4OPS";
	case dnnl_cpu_isa_avx512_core: return "AVX-512";
	case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 VNNI";
	case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512 BF16";
	case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 AMX";
	default: return "generic";
	}
}

int bt_cpu_new(struct bt_cpu **out_cpu, int threads)
{
	struct bt_cpu *cpu;
	const dnnl_version_t *v;
	int rc = BT_OK;

	*out_cpu = NULL;
	if (threads < 0)
		return bt_error(BT_ERR_INVALID, "threads must be >= 0, not %d", threads);
	cpu = calloc(1, sizeof *cpu);
	if (!cpu)
		return bt_error(BT_ERR_NOMEM, "cpu context");
	{
		const char *w = getenv("BT_CPU_WINO"), *j = getenv("BT_CPU_JIT");
		cpu->wino_min = w ? atoi(w) : 64;
		if (cpu->wino_min < 0)
			cpu->wino_min = 0;
		cpu->prefer_jit = !(j && j[0] == '0');
	}
	cpu->cap = 64;
	cpu->tab = calloc(cpu->cap, sizeof *cpu->tab);
	if (!cpu->tab) {
		rc = bt_error(BT_ERR_NOMEM, "cpu primitive cache");
		goto out;
	}
	/* oneDNN threads through OpenMP; its thread count is process-wide. */
	if (threads > 0)
		omp_set_num_threads(threads);
	DN(dnnl_engine_create(&cpu->engine, dnnl_cpu, 0), "engine");
	DN(dnnl_stream_create(&cpu->stream, cpu->engine, dnnl_stream_default_flags), "stream");
	/* oneDNN generates its sgemm kernels at the first call, and crashes if memory runs out
	 * then (it has no error path there): generate them now, while memory is plentiful. */
	{
		float a = 1, b = 1, c = 0;
		DN(dnnl_sgemm('N', 'T', 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1), "sgemm");
	}
	v = dnnl_version();
	snprintf(cpu->desc, sizeof cpu->desc, "oneDNN v%d.%d.%d (CPU ISA: %s, %d threads)",
		 v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()),
		 omp_get_max_threads());
	*out_cpu = cpu;
	cpu = NULL;
out:
	bt_cpu_free(cpu);
	return rc;
}

static void entry_free(struct bt_entry *e)
{
	if (!e)
		return;
	for (int i = 0; i < e->nargs; i++) {
		if (e->a[i].reorder)
			dnnl_primitive_destroy(e->a[i].reorder);
		if (e->a[i].inner)
			dnnl_memory_destroy(e->a[i].inner);
		if (e->a[i].user)
			dnnl_memory_destroy(e->a[i].user);
	}
	if (e->scratchpad)
		dnnl_memory_destroy(e->scratchpad);
	if (e->prim)
		dnnl_primitive_destroy(e->prim);
	if (e->pd)
		dnnl_primitive_desc_destroy(e->pd);
	if (e->hint)
		dnnl_primitive_desc_destroy(e->hint);
	free(e);
}

void bt_cpu_free(struct bt_cpu *cpu)
{
	if (!cpu)
		return;
	for (size_t i = 0; i < cpu->cap && cpu->tab; i++)
		entry_free(cpu->tab[i]);
	free(cpu->tab);
	if (cpu->stream)
		dnnl_stream_destroy(cpu->stream);
	if (cpu->engine)
		dnnl_engine_destroy(cpu->engine);
	free(cpu->scratch);
	free(cpu->aux);
	free(cpu->fcb);
	free(cpu);
}

const char *bt_cpu_describe(struct bt_cpu *cpu)
{
	return cpu->desc;
}

int bt_cpu_cache_misses(struct bt_cpu *cpu)
{
	return cpu->misses;
}

int bt_cpu_bf16(struct bt_cpu *cpu)
{
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
	(void)cpu;
	/* AMX's mask contains AVX-512 BF16's */
	return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

/* ---- the primitive cache ---------------------------------------------------------------- */

static void make_key(int key[KEY_INTS], int kind, const void *desc, size_t bytes)
{
	BT_ASSERT(bytes <= sizeof(int) * (KEY_INTS - 1));
	memset(key, 0, sizeof(int) * KEY_INTS);
	key[0] = kind;
	memcpy(key + 1, desc, bytes);
}

static size_t key_hash(const int key[KEY_INTS])
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < KEY_INTS; i++)
		h = (h ^ (uint32_t)key[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

static struct bt_entry *cache_find(struct bt_cpu *cpu, const int key[KEY_INTS])
{
	size_t mask = cpu->cap - 1;
	for (size_t i = key_hash(key) & mask;; i = (i + 1) & mask) {
		struct bt_entry *e = cpu->tab[i];
		if (!e)
			return NULL;
		if (memcmp(e->key, key, sizeof e->key) == 0)
			return e;
	}
}

static int cache_insert(struct bt_cpu *cpu, struct bt_entry *e)
{
	if (2 * (cpu->count + 1) > cpu->cap) {
		size_t ncap = cpu->cap * 2;
		struct bt_entry **nt = calloc(ncap, sizeof *nt);
		if (!nt)
			return bt_error(BT_ERR_NOMEM, "cpu primitive cache");
		for (size_t i = 0; i < cpu->cap; i++) {
			struct bt_entry *o = cpu->tab[i];
			size_t j;
			if (!o)
				continue;
			for (j = key_hash(o->key) & (ncap - 1); nt[j]; j = (j + 1) & (ncap - 1))
				;
			nt[j] = o;
		}
		free(cpu->tab);
		cpu->tab = nt;
		cpu->cap = ncap;
	}
	size_t mask = cpu->cap - 1, i;
	for (i = key_hash(e->key) & mask; cpu->tab[i]; i = (i + 1) & mask)
		;
	cpu->tab[i] = e;
	cpu->count++;
	return BT_OK;
}

static int scratch_reserve(struct bt_cpu *cpu, size_t bytes)
{
	void *p;
	if (bytes <= cpu->scratch_bytes)
		return BT_OK;
	if (posix_memalign(&p, 64, bytes) != 0)
		return bt_error(BT_ERR_NOMEM, "cpu scratch of %zu bytes", bytes);
	free(cpu->scratch);
	cpu->scratch = p;
	cpu->scratch_bytes = bytes;
	return BT_OK;
}

/* Grows *buf (of *have floats) to hold at least want floats; its contents are not kept. */
static int floats_reserve(float **buf, size_t *have, size_t want, const char *what)
{
	float *p;
	if (want <= *have)
		return BT_OK;
	p = realloc(*buf, want * sizeof *p);
	if (!p)
		return bt_error(BT_ERR_NOMEM, "cpu %s of %zu floats", what, want);
	*buf = p;
	*have = want;
	return BT_OK;
}

static int aux_reserve(struct bt_cpu *cpu, size_t floats)
{
	return floats_reserve(&cpu->aux, &cpu->aux_floats, floats, "aux");
}

static int make_reorder(struct bt_cpu *cpu, dnnl_primitive_t *r, const dnnl_memory_desc_t *from,
			const dnnl_memory_desc_t *to, int sum)
{
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	int rc = BT_OK;

	DN(dnnl_primitive_attr_create(&attr), "reorder attr");
	if (sum) {
		DN(dnnl_post_ops_create(&po), "post ops");
		DN(dnnl_post_ops_append_sum(po, 1.0f), "sum post op");
		DN(dnnl_primitive_attr_set_post_ops(attr, po), "reorder post ops");
	}
	DN(dnnl_reorder_primitive_desc_create(&pd, from, cpu->engine, to, cpu->engine, attr),
	   "reorder");
	DN(dnnl_primitive_create(r, pd), "reorder primitive");
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* oneDNN's code generator crashes when it cannot allocate (it has no error path), which an
 * address-space limit (ulimit -v) makes likely once the run's buffers are in place. So a
 * primitive is only created while an 8 MiB mapping could still be made; else the caller
 * gets BT_ERR_NOMEM. The probe maps nothing in: it is unmapped at once. */
#define JIT_HEADROOM ((size_t)8 << 20)
static int jit_headroom(void)
{
	void *p = mmap(NULL, JIT_HEADROOM, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return bt_error(BT_ERR_NOMEM, "oneDNN: too little memory left to generate a kernel");
	munmap(p, JIT_HEADROOM);
	return BT_OK;
}

/* Finish an entry whose pd (built with a user-mode scratchpad) is set: create the primitive,
 * a memory per argument, reorders where the primitive's layout differs from the caller's or
 * the result must be added, and make sure the scratch buffer holds scratchpad and copies. */
static int entry_build(struct bt_cpu *cpu, struct bt_entry *e, const struct bt_argspec *spec,
		       int nspec)
{
	const dnnl_memory_desc_t *md;
	size_t tmp = 0;
	int rc = BT_OK;

	BT_ASSERT(nspec <= MAX_ARGS);
	if ((rc = jit_headroom()) < 0)
		return rc;
	DN(dnnl_primitive_create(&e->prim, e->pd), "primitive");
	md = dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0);
	e->spad_bytes = md ? round64(dnnl_memory_desc_get_size(md)) : 0;
	DN(dnnl_memory_create(&e->scratchpad, md, cpu->engine, DNNL_MEMORY_NONE), "scratchpad");
	for (int i = 0; i < nspec; i++) {
		struct bt_arg *a = &e->a[i];
		const dnnl_memory_desc_t *want;

		a->id = spec[i].id;
		a->mode = spec[i].mode;
		e->nargs = i + 1;
		want = dnnl_primitive_desc_query_md(e->pd, dnnl_query_exec_arg_md, a->id);
		if (!want || want->ndims == 0) {
			rc = bt_error(BT_ERR_UNSUPPORTED, "oneDNN: primitive has no argument %d",
				      a->id);
			goto out;
		}
		md = spec[i].md ? spec[i].md : want;
		DN(dnnl_memory_create(&a->user, md, cpu->engine, DNNL_MEMORY_NONE), "memory");
		if (a->mode == ARG_ACC || !dnnl_memory_desc_equal(md, want)) {
			DN(dnnl_memory_create(&a->inner, want, cpu->engine, DNNL_MEMORY_NONE),
			   "memory");
			a->off = tmp;
			tmp += round64(dnnl_memory_desc_get_size(want));
			if (a->mode == ARG_IN)
				rc = make_reorder(cpu, &a->reorder, md, want, 0);
			else
				rc = make_reorder(cpu, &a->reorder, want, md, a->mode == ARG_ACC);
			if (rc)
				goto out;
		}
		e->ex[i].arg = a->id;
		e->ex[i].memory = a->inner ? a->inner : a->user;
	}
	e->ex[nspec].arg = DNNL_ARG_SCRATCHPAD;
	e->ex[nspec].memory = e->scratchpad;
	rc = scratch_reserve(cpu, e->spad_bytes + tmp);
out:
	return rc;
}

static int run_reorder(struct bt_cpu *cpu, struct bt_arg *a, int to_inner)
{
	dnnl_exec_arg_t ex[2] = {
		{ DNNL_ARG_FROM, to_inner ? a->user : a->inner },
		{ DNNL_ARG_TO, to_inner ? a->inner : a->user },
	};
	dnnl_status_t s = dnnl_primitive_execute(a->reorder, cpu->stream, 2, ex);
	return s == dnnl_success ? BT_OK : dnnl_fail(s, "reorder");
}

/* Execute an entry on the caller's buffers, given in the order of its argspecs. */
static int entry_run(struct bt_cpu *cpu, struct bt_entry *e, void *const *ptr)
{
	char *inner_base = cpu->scratch + e->spad_bytes;
	int rc = BT_OK;

	DN(dnnl_memory_set_data_handle(e->scratchpad, cpu->scratch), "set handle");
	for (int i = 0; i < e->nargs; i++) {
		struct bt_arg *a = &e->a[i];
		DN(dnnl_memory_set_data_handle(a->user, ptr[i]), "set handle");
		if (!a->inner)
			continue;
		DN(dnnl_memory_set_data_handle(a->inner, inner_base + a->off), "set handle");
		if (a->mode == ARG_IN && (rc = run_reorder(cpu, a, 1)))
			goto out;
	}
	DN(dnnl_primitive_execute(e->prim, cpu->stream, e->nargs + 1, e->ex), "execute");
	for (int i = 0; i < e->nargs; i++)
		if (e->a[i].inner && e->a[i].mode != ARG_IN && (rc = run_reorder(cpu, &e->a[i], 0)))
			goto out;
	DN(dnnl_stream_wait(cpu->stream), "stream wait");
out:
	return rc;
}

static dnnl_primitive_attr_t user_scratchpad_attr(void)
{
	dnnl_primitive_attr_t attr = NULL;
	if (dnnl_primitive_attr_create(&attr) != dnnl_success)
		return NULL;
	if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
	    dnnl_success) {
		dnnl_primitive_attr_destroy(attr);
		return NULL;
	}
	return attr;
}

/* The first of oneDNN's implementations whose name starts with "jit:" (its plain JIT kernel,
 * any ISA); dnnl_unimplemented when it has none. */
static dnnl_status_t pd_first_jit(dnnl_primitive_desc_t *pd, struct bt_cpu *cpu,
				  const void *op_desc, const_dnnl_primitive_attr_t attr)
{
	dnnl_primitive_desc_iterator_t it = NULL;
	dnnl_status_t s = dnnl_primitive_desc_iterator_create(&it, op_desc, attr, cpu->engine, NULL);

	*pd = NULL;
	if (s != dnnl_success)
		return s;
	do {
		dnnl_primitive_desc_t p = dnnl_primitive_desc_iterator_fetch(it);
		const char *name = NULL;
		if (!p)
			break;
		if (dnnl_primitive_desc_query(p, dnnl_query_impl_info_str, 0, &name) ==
			    dnnl_success &&
		    name && strncmp(name, "jit:", 4) == 0) {
			*pd = p;
			break;
		}
		dnnl_primitive_desc_destroy(p);
	} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	dnnl_primitive_desc_iterator_destroy(it);
	return *pd ? dnnl_success : dnnl_unimplemented;
}

/* post: BT_CONV_POST_* flags, as oneDNN post-operations in that order (sum, then ReLU); jit:
 * take pd_first_jit's choice instead of oneDNN's first. Quiet: the status is returned, for
 * callers that have another choice. */
static dnnl_status_t pd_try_post(dnnl_primitive_desc_t *pd, struct bt_cpu *cpu, const void *op_desc,
				 const_dnnl_primitive_desc_t hint, int post, int jit)
{
	dnnl_primitive_attr_t attr = user_scratchpad_attr();
	dnnl_post_ops_t po = NULL;
	dnnl_status_t s = dnnl_success;
	if (!attr)
		return dnnl_out_of_memory;
	if (post) {
		s = dnnl_post_ops_create(&po);
		if (s == dnnl_success && (post & BT_CONV_POST_SUM))
			s = dnnl_post_ops_append_sum(po, 1.0f);
		if (s == dnnl_success && (post & BT_CONV_POST_RELU))
			s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
		if (s == dnnl_success)
			s = dnnl_primitive_attr_set_post_ops(attr, po);
		if (po)
			dnnl_post_ops_destroy(po);
	}
	if (s == dnnl_success)
		s = jit ? pd_first_jit(pd, cpu, op_desc, attr)
			: dnnl_primitive_desc_create(pd, op_desc, attr, cpu->engine, hint);
	dnnl_primitive_attr_destroy(attr);
	return s;
}

static int pd_create_post(dnnl_primitive_desc_t *pd, struct bt_cpu *cpu, const void *op_desc,
			  const_dnnl_primitive_desc_t hint, int post, const char *what)
{
	dnnl_status_t s = pd_try_post(pd, cpu, op_desc, hint, post, 0);
	if (s == dnnl_out_of_memory)
		return bt_error(BT_ERR_NOMEM, "oneDNN: %s: out of memory", what);
	return s == dnnl_success ? BT_OK : dnnl_fail(s, what);
}

static int pd_create(dnnl_primitive_desc_t *pd, struct bt_cpu *cpu, const void *op_desc,
		     const_dnnl_primitive_desc_t hint, const char *what)
{
	return pd_create_post(pd, cpu, op_desc, hint, 0, what);
}

/* Look up (kind, desc) or build it with the given builder; a miss is counted. */
typedef int (*bt_builder)(struct bt_cpu *, struct bt_entry *, const void *desc);

static int cache_get(struct bt_cpu *cpu, int kind, const void *desc, size_t bytes,
		     bt_builder build, struct bt_entry **out)
{
	int key[KEY_INTS];
	struct bt_entry *e;
	int rc;

	make_key(key, kind, desc, bytes);
	e = cache_find(cpu, key);
	if (e) {
		*out = e;
		return BT_OK;
	}
	cpu->misses++;
	e = calloc(1, sizeof *e);
	if (!e)
		return bt_error(BT_ERR_NOMEM, "cpu cache entry");
	memcpy(e->key, key, sizeof key);
	rc = build(cpu, e, desc);
	if (!rc)
		rc = cache_insert(cpu, e);
	if (rc) {
		entry_free(e);
		return rc;
	}
	*out = e;
	return BT_OK;
}

/* oneDNN's type for one of ours: float32, or bfloat16 (mixed precision); float16 has no
 * training kernels on x86 CPUs in oneDNN 2.6, so it is refused here. */
static int bad_dtype(int dtype)
{
	return bt_error(BT_ERR_UNSUPPORTED, "%s needs --device cuda: the CPU backend computes in float32 or bfloat16",
			bt_dtype_name(dtype));
}

static int dnn_type(int dtype, dnnl_data_type_t *t)
{
	switch (dtype) {
	case BT_DTYPE_F32: *t = dnnl_f32; return BT_OK;
	case BT_DTYPE_BF16: *t = dnnl_bf16; return BT_OK;
	default: return bad_dtype(dtype);
	}
}

static int md_init_t(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
		     dnnl_format_tag_t tag, dnnl_data_type_t t)
{
	dnnl_status_t s = dnnl_memory_desc_init_by_tag(md, ndims, dims, t, tag);
	return s == dnnl_success ? BT_OK : dnnl_fail(s, "memory descriptor");
}

static int md_init(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
		   dnnl_format_tag_t tag)
{
	return md_init_t(md, ndims, dims, tag, dnnl_f32);
}

/* Right padding that makes oneDNN's output size come out as the caller's: the symmetric
 * padding when that already does (floor mode), else what ceil mode implies. */
static dnnl_dim_t pad_right(int in, int out, int k, int s, int dil, int pl)
{
	int ext = (k - 1) * dil + 1;
	if ((in + 2 * pl - ext) / s + 1 == out && in + 2 * pl - ext >= 0)
		return pl;
	return (dnnl_dim_t)(out - 1) * s + ext - in - pl;
}

/* ---- convolution ------------------------------------------------------------------------ */

struct conv_mds {
	dnnl_memory_desc_t x, w, b, y;       /* the caller's layouts */
	dnnl_memory_desc_t dw;               /* the caller's weight gradient: float32 always */
	dnnl_memory_desc_t xa, wa, ya, dwa;  /* what the primitive is asked for */
	dnnl_dims_t strides, dil, pl, pr;
	dnnl_alg_kind_t alg;
	int jit;                             /* forward: prefer the plain jit kernel */
};

/* Winograd F(4x4, 3x3) (oneDNN's jit_wino_4x3, AVX-512 only) for 3x3 stride-1 convolutions
 * of 64 channels or more in and out on outputs of 7x7 or more. It wants blocked activations
 * (nChw16c), so they are reordered in and out of scratch. Measured on the 2-CPU AVX-512 VM
 * (docs/benchmarks.md): resnet50_v1 b16 training 13-20 % faster, cifar_resnet20_v1 3x32x32
 * b128 about 4 %; at 32 channels (16x16) the reorders cost more than the 4x3 transform saves,
 * and below 7x7 the 6x6 tiles are mostly padding (and their scratch grows past what the
 * out-of-memory estimate leaves for workspaces). It rounds differently from a direct sum
 * (relative error about 1e-5 per layer against 1e-7). Never where a residual sum is fused:
 * the sum post-op reads y in the primitive's layout. BT_CPU_WINO=0 turns it off, =N sets
 * the smallest channel count. */
static int wino_wanted(const struct bt_cpu *cpu, const struct bt_conv_desc *d)
{
	int min = cpu->wino_min;
	return min > 0 && d->dtype == BT_DTYPE_F32 && d->kh == 3 && d->kw == 3 && d->sh == 1 &&
	       d->sw == 1 && d->dh == 1 && d->dw == 1 && d->groups == 1 && !(d->post & BT_CONV_POST_SUM) && d->c >= min &&
	       d->cout >= min && d->oh >= 7 && d->ow >= 7;
}

/* oneDNN's first choice for a direct forward convolution on AVX-512 is brgconv; its plain
 * jit kernel is faster on few input channels and on narrow 16-channel layers (2026-11-29,
 * mb 45-128, ms: 1 -> 16 at 28x28 0.11 against 0.23; 3 -> 16 at 32x32 0.38 against 0.49;
 * 16 -> 16 at 28x28 1.31-1.45 against 1.68-2.00, at 14x14 0.30 against 0.35; but at 32x32
 * and 56x56 brgconv wins, and at 32 channels and up). A rule on the shape, not a timing,
 * so the same shapes always take the same kernel. BT_CPU_JIT=0 keeps oneDNN's order. */
static int prefer_jit(const struct bt_cpu *cpu, const struct bt_conv_desc *d)
{
	return cpu->prefer_jit && d->groups == 1 &&
	       (d->c <= 4 || (d->c <= 16 && d->cout <= 16 && d->ow < 32));
}

static int conv_mds_init(struct conv_mds *m, const struct bt_cpu *cpu, const struct bt_conv_desc *d)
{
	dnnl_dims_t xd = { d->n, d->c, d->h, d->w }, yd = { d->n, d->cout, d->oh, d->ow };
	dnnl_dims_t bd = { d->cout };
	dnnl_data_type_t t = dnnl_f32;
	int g = d->groups, rc;

	memset(m, 0, sizeof *m);
	m->alg = dnnl_convolution_direct;
	m->jit = prefer_jit(cpu, d);
	if ((rc = dnn_type(d->dtype, &t)) || (rc = md_init_t(&m->x, 4, xd, dnnl_nhwc, t)) ||
	    (rc = md_init_t(&m->y, 4, yd, dnnl_nhwc, t)) || (rc = md_init(&m->b, 1, bd, dnnl_x)))
		return rc;
	{
		dnnl_dims_t wd4 = { d->cout, d->c, d->kh, d->kw };
		dnnl_dims_t wd5 = { g, d->cout / g, d->c / g, d->kh, d->kw };
		int nd = g == 1 ? 4 : 5;
		const dnnl_dim_t *wd = g == 1 ? wd4 : wd5;
		dnnl_format_tag_t tag = g == 1 ? dnnl_ohwi : dnnl_gohwi;
		dnnl_format_tag_t pick = BT_CPU_CONV_ANY ? dnnl_format_tag_any : tag;
		if ((rc = md_init_t(&m->w, nd, wd, tag, t)) ||
		    (rc = md_init_t(&m->wa, nd, wd, pick, t)) ||
		    (rc = md_init(&m->dw, nd, wd, tag)) || (rc = md_init(&m->dwa, nd, wd, pick)))
			return rc;
	}
	if (BT_CPU_CONV_ANY == 2) {
		if ((rc = md_init_t(&m->xa, 4, xd, dnnl_format_tag_any, t)) ||
		    (rc = md_init_t(&m->ya, 4, yd, dnnl_format_tag_any, t)))
			return rc;
	} else {
		m->xa = m->x;
		m->ya = m->y;
	}
	m->strides[0] = d->sh;
	m->strides[1] = d->sw;
	m->dil[0] = d->dh - 1; /* oneDNN counts dilation from 0 */
	m->dil[1] = d->dw - 1;
	m->pl[0] = d->ph;
	m->pl[1] = d->pw;
	m->pr[0] = pad_right(d->h, d->oh, d->kh, d->sh, d->dh, d->ph);
	m->pr[1] = pad_right(d->w, d->ow, d->kw, d->sw, d->dw, d->pw);
	if (wino_wanted(cpu, d)) {
		if ((rc = md_init_t(&m->xa, 4, xd, dnnl_format_tag_any, t)) ||
		    (rc = md_init_t(&m->ya, 4, yd, dnnl_format_tag_any, t)))
			return rc;
		m->alg = dnnl_convolution_winograd;
	}
	return BT_OK;
}

/* Winograd where oneDNN has it for this shape and machine, else direct on NHWC; m says
 * which, for the backward descriptors that follow. */
static int conv_fwd_pd(struct bt_cpu *cpu, dnnl_primitive_desc_t *pd, struct conv_mds *m,
		       int bias, int post)
{
	dnnl_convolution_desc_t cd;
	dnnl_status_t s;

	if (m->alg == dnnl_convolution_winograd) {
		/* forward_training even for inference: forward_inference asks for weights in
		 * oneDNN's pre-transformed Winograd layout, which nothing reorders OHWI into */
		s = dnnl_dilated_convolution_forward_desc_init(
			&cd, dnnl_forward_training, m->alg, &m->xa, &m->wa, bias ? &m->b : NULL,
			&m->ya, m->strides, m->dil, m->pl, m->pr);
		if (s == dnnl_success)
			s = pd_try_post(pd, cpu, &cd, NULL, post, 0);
		if (s == dnnl_success) {
			const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(
				*pd, dnnl_query_weights_md, 0);
			if (w && w->format_kind == dnnl_blocked)
				return BT_OK;
			dnnl_primitive_desc_destroy(*pd);
		}
		*pd = NULL;
		m->alg = dnnl_convolution_direct;
		m->xa = m->x;
		m->ya = m->y;
	}
	s = dnnl_dilated_convolution_forward_desc_init(
		&cd, post ? dnnl_forward_inference : dnnl_forward_training, m->alg,
		&m->xa, &m->wa, bias ? &m->b : NULL, &m->ya, m->strides, m->dil, m->pl, m->pr);
	if (s != dnnl_success)
		return dnnl_fail(s, "convolution descriptor");
	if (m->jit && pd_try_post(pd, cpu, &cd, NULL, post, 1) == dnnl_success)
		return BT_OK;
	return pd_create_post(pd, cpu, &cd, NULL, post, "convolution forward");
}

static int build_conv_fwd(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bt_conv_desc *d = desc;
	struct conv_mds m;
	int rc;

	if ((rc = conv_mds_init(&m, cpu, d)) || (rc = conv_fwd_pd(cpu, &e->pd, &m, d->bias, d->post)))
		return rc;
	/* With a sum post-operation the primitive reads y, so y must be its own layout
	 * (always so: activations are asked for in NHWC). */
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &m.x },
		{ DNNL_ARG_WEIGHTS, ARG_IN, &m.w },
		{ DNNL_ARG_DST, ARG_OUT, &m.y },
		{ DNNL_ARG_BIAS, ARG_IN, &m.b },
	};
	return entry_build(cpu, e, spec, d->bias ? 4 : 3);
}

static int build_conv_bwd_data(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bt_conv_desc *d = desc;
	struct conv_mds m;
	dnnl_convolution_desc_t cd;
	dnnl_status_t s;
	int rc;

	if ((rc = conv_mds_init(&m, cpu, d)) || (rc = conv_fwd_pd(cpu, &e->hint, &m, 0, 0)))
		return rc;
	s = dnnl_dilated_convolution_backward_data_desc_init(&cd, m.alg, &m.xa,
							     &m.wa, &m.ya, m.strides, m.dil,
							     m.pl, m.pr);
	if (s != dnnl_success)
		return dnnl_fail(s, "convolution backward data descriptor");
	if ((rc = pd_create(&e->pd, cpu, &cd, e->hint, "convolution backward data")))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_DIFF_DST, ARG_IN, &m.y },
		{ DNNL_ARG_WEIGHTS, ARG_IN, &m.w },
		{ DNNL_ARG_DIFF_SRC, ARG_OUT, &m.x },
	};
	return entry_build(cpu, e, spec, 3);
}

static int build_conv_bwd_w(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bt_conv_desc *d = desc;
	struct conv_mds m;
	dnnl_convolution_desc_t cd;
	dnnl_status_t s;
	int rc;

	if ((rc = conv_mds_init(&m, cpu, d)) || (rc = conv_fwd_pd(cpu, &e->hint, &m, d->bias, 0)))
		return rc;
	s = dnnl_dilated_convolution_backward_weights_desc_init(
		&cd, m.alg, &m.xa, &m.dwa, d->bias ? &m.b : NULL, &m.ya,
		m.strides, m.dil, m.pl, m.pr);
	if (s != dnnl_success)
		return dnnl_fail(s, "convolution backward weights descriptor");
	if ((rc = pd_create(&e->pd, cpu, &cd, e->hint, "convolution backward weights")))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &m.x },
		{ DNNL_ARG_DIFF_DST, ARG_IN, &m.y },
		{ DNNL_ARG_DIFF_WEIGHTS, ARG_ACC, &m.dw },
		{ DNNL_ARG_DIFF_BIAS, ARG_ACC, &m.b },
	};
	return entry_build(cpu, e, spec, d->bias ? 4 : 3);
}

int bt_cpu_conv_fwd(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *x,
		    const void *w, const float *b, void *y)
{
	struct bt_entry *e;
	int rc;

	if ((rc = bt_conv_desc_check(d)))
		return rc;
	if (d->bias && !b)
		return bt_error(BT_ERR_INVALID, "convolution with bias needs b");
	if ((rc = cache_get(cpu, K_CONV_FWD, d, sizeof *d, build_conv_fwd, &e)))
		return rc;
	void *p[4] = { (void *)x, (void *)w, y, (void *)b };
	return entry_run(cpu, e, p);
}

const char *bt_cpu_conv_impl(struct bt_cpu *cpu, const struct bt_conv_desc *d, int pass)
{
	static const int kinds[3] = { K_CONV_FWD, K_CONV_BWD_DATA, K_CONV_BWD_W };
	static const bt_builder builders[3] = { build_conv_fwd, build_conv_bwd_data,
						build_conv_bwd_w };
	struct bt_conv_desc k;
	struct bt_entry *e;
	const char *name = NULL;

	if (pass < 0 || pass > 2 || bt_conv_desc_check(d))
		return NULL;
	k = *d;
	if (pass > 0)
		k.post = 0;
	if (pass == 1)
		k.bias = 0;
	if (cache_get(cpu, kinds[pass], &k, sizeof k, builders[pass], &e) ||
	    dnnl_primitive_desc_query(e->pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success)
		return NULL;
	return name;
}

int bt_cpu_conv_bwd_data(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *dy,
			 const void *w, void *dx)
{
	struct bt_conv_desc k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_conv_desc_check(d)))
		return rc;
	k = *d;
	k.bias = 0; /* backward data is the same with or without a bias */
	k.post = 0;
	if ((rc = cache_get(cpu, K_CONV_BWD_DATA, &k, sizeof k, build_conv_bwd_data, &e)))
		return rc;
	void *p[3] = { (void *)dy, (void *)w, dx };
	return entry_run(cpu, e, p);
}

int bt_cpu_conv_bwd_weights(struct bt_cpu *cpu, const struct bt_conv_desc *d, const void *x,
			    const void *dy, float *dw, float *db)
{
	struct bt_conv_desc k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_conv_desc_check(d)))
		return rc;
	if (d->bias && !db)
		return bt_error(BT_ERR_INVALID, "convolution with bias needs db");
	k = *d;
	k.post = 0;
	if ((rc = cache_get(cpu, K_CONV_BWD_W, &k, sizeof k, build_conv_bwd_w, &e)))
		return rc;
	void *p[4] = { (void *)x, (void *)dy, dw, db };
	return entry_run(cpu, e, p);
}

/* ---- batch norm ------------------------------------------------------------------------- */

/* The cache key: momentum does not change the primitive. */
struct bn_key {
	int n, h, w, c;
	float eps;
	int relu;               /* the ReLU after it fused (training) */
	int dtype;              /* of x, y, dx and dy */
};

static struct bn_key bn_key_of(const struct bt_bn_desc *d)
{
	struct bn_key k;
	memset(&k, 0, sizeof k);
	k.n = d->n;
	k.h = d->h;
	k.w = d->w;
	k.c = d->c;
	k.eps = d->eps;
	k.dtype = d->dtype;
	return k;
}

static const unsigned bn_flags = dnnl_use_scale | dnnl_use_shift;

static int bn_fwd_pd(struct bt_cpu *cpu, dnnl_primitive_desc_t *pd, const struct bn_key *k,
		     dnnl_memory_desc_t *x, dnnl_memory_desc_t *c, int train)
{
	dnnl_dims_t xd = { k->n, k->c, k->h, k->w }, cd = { k->c };
	dnnl_batch_normalization_desc_t bd;
	dnnl_data_type_t t = dnnl_f32;
	dnnl_status_t s;
	int rc;

	if ((rc = dnn_type(k->dtype, &t)) || (rc = md_init_t(x, 4, xd, dnnl_nhwc, t)) ||
	    (rc = md_init(c, 1, cd, dnnl_x)))
		return rc;
	s = dnnl_batch_normalization_forward_desc_init(
		&bd, train ? dnnl_forward_training : dnnl_forward_inference, x, k->eps,
		(train ? bn_flags : bn_flags | dnnl_use_global_stats) |
			(k->relu ? dnnl_fuse_norm_relu : 0));
	if (s != dnnl_success)
		return dnnl_fail(s, "batch norm descriptor");
	return pd_create(pd, cpu, &bd, NULL, "batch norm forward");
}

static int build_bn_fwd_train(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bn_key *k = desc;
	dnnl_memory_desc_t x, c;
	int rc;

	if ((rc = bn_fwd_pd(cpu, &e->pd, k, &x, &c, 1)) || (rc = aux_reserve(cpu, k->c)))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &x },     { DNNL_ARG_SCALE, ARG_IN, &c },
		{ DNNL_ARG_SHIFT, ARG_IN, &c },   { DNNL_ARG_DST, ARG_OUT, &x },
		{ DNNL_ARG_MEAN, ARG_OUT, &c },   { DNNL_ARG_VARIANCE, ARG_OUT, &c },
		{ DNNL_ARG_WORKSPACE, ARG_OUT, NULL }, /* the ReLU's mask, in oneDNN's format */
	};
	return entry_build(cpu, e, spec, k->relu ? 7 : 6);
}

static int build_bn_fwd_infer(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bn_key *k = desc;
	dnnl_memory_desc_t x, c;
	int rc;

	if ((rc = bn_fwd_pd(cpu, &e->pd, k, &x, &c, 0)))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &x },     { DNNL_ARG_SCALE, ARG_IN, &c },
		{ DNNL_ARG_SHIFT, ARG_IN, &c },   { DNNL_ARG_MEAN, ARG_IN, &c },
		{ DNNL_ARG_VARIANCE, ARG_IN, &c }, { DNNL_ARG_DST, ARG_OUT, &x },
	};
	return entry_build(cpu, e, spec, 6);
}

static int build_bn_bwd(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bn_key *k = desc;
	dnnl_memory_desc_t x, c;
	dnnl_batch_normalization_desc_t bd;
	dnnl_status_t s;
	int rc;

	if ((rc = bn_fwd_pd(cpu, &e->hint, k, &x, &c, 1)) || (rc = aux_reserve(cpu, k->c)))
		return rc;
	s = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &x, &x, k->eps,
							 bn_flags | (k->relu ? dnnl_fuse_norm_relu : 0));
	if (s != dnnl_success)
		return dnnl_fail(s, "batch norm backward descriptor");
	if ((rc = pd_create(&e->pd, cpu, &bd, e->hint, "batch norm backward")))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &x },          { DNNL_ARG_DIFF_DST, ARG_IN, &x },
		{ DNNL_ARG_SCALE, ARG_IN, &c },        { DNNL_ARG_MEAN, ARG_IN, &c },
		{ DNNL_ARG_VARIANCE, ARG_IN, &c },     { DNNL_ARG_DIFF_SRC, ARG_OUT, &x },
		{ DNNL_ARG_DIFF_SCALE, ARG_ACC, &c },  { DNNL_ARG_DIFF_SHIFT, ARG_ACC, &c },
		/* oneDNN 2.6 counts the shift among backward's inputs, though it never reads it */
		{ DNNL_ARG_SHIFT, ARG_IN, &c },
		{ DNNL_ARG_WORKSPACE, ARG_IN, NULL },
	};
	return entry_build(cpu, e, spec, k->relu ? 10 : 9);
}

static int bn_fwd_train(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			const float *gamma, const float *beta, float *running_mean,
			float *running_var, float *save_mean, float *save_invstd, void *y, void *ws,
			int relu)
{
	struct bn_key k;
	struct bt_entry *e;
	double m = (double)d->n * d->h * d->w;
	float unbias;
	int rc;

	if ((rc = bt_bn_desc_check(d)))
		return rc;
	if (relu && !ws)
		return bt_error(BT_ERR_INVALID, "batch norm with ReLU needs a workspace");
	k = bn_key_of(d);
	k.relu = relu;
	if ((rc = cache_get(cpu, K_BN_FWD_TRAIN, &k, sizeof k, build_bn_fwd_train, &e)))
		return rc;
	float *var = cpu->aux; /* oneDNN's biased batch variance */
	void *p[7] = { (void *)x, (void *)gamma, (void *)beta, y, save_mean, var, ws };
	if ((rc = entry_run(cpu, e, p)))
		return rc;
	/* PyTorch updates the running variance with the unbiased estimate. */
	unbias = m > 1 ? (float)(m / (m - 1)) : 1.0f;
	for (int i = 0; i < d->c; i++) {
		save_invstd[i] = 1.0f / sqrtf(var[i] + d->eps);
		running_mean[i] = (1 - d->momentum) * running_mean[i] + d->momentum * save_mean[i];
		running_var[i] = (1 - d->momentum) * running_var[i] + d->momentum * var[i] * unbias;
	}
	return BT_OK;
}

int bt_cpu_bn_fwd_train(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			const float *gamma, const float *beta, float *running_mean,
			float *running_var, float *save_mean, float *save_invstd, void *y)
{
	return bn_fwd_train(cpu, d, x, gamma, beta, running_mean, running_var, save_mean,
			    save_invstd, y, NULL, 0);
}

int bt_cpu_bn_relu_fwd_train(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			     const float *gamma, const float *beta, float *running_mean,
			     float *running_var, float *save_mean, float *save_invstd, void *y,
			     void *ws)
{
	return bn_fwd_train(cpu, d, x, gamma, beta, running_mean, running_var, save_mean,
			    save_invstd, y, ws, 1);
}

size_t bt_cpu_bn_relu_ws_bytes(struct bt_cpu *cpu, const struct bt_bn_desc *d)
{
	const dnnl_memory_desc_t *md;
	struct bn_key k;
	struct bt_entry *e;

	if (bt_bn_desc_check(d))
		return 0;
	k = bn_key_of(d);
	k.relu = 1;
	if (cache_get(cpu, K_BN_FWD_TRAIN, &k, sizeof k, build_bn_fwd_train, &e))
		return 0;
	md = dnnl_primitive_desc_query_md(e->pd, dnnl_query_workspace_md, 0);
	return md ? dnnl_memory_desc_get_size(md) : 0;
}

int bt_cpu_bn_fwd_infer(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
			const float *gamma, const float *beta, const float *running_mean,
			const float *running_var, void *y)
{
	struct bn_key k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_bn_desc_check(d)))
		return rc;
	k = bn_key_of(d);
	if ((rc = cache_get(cpu, K_BN_FWD_INFER, &k, sizeof k, build_bn_fwd_infer, &e)))
		return rc;
	void *p[6] = { (void *)x, (void *)gamma, (void *)beta, (void *)running_mean,
		       (void *)running_var, y };
	return entry_run(cpu, e, p);
}

static int bn_bwd(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x, const void *dy,
		  const float *gamma, const float *save_mean, const float *save_invstd,
		  const void *ws, void *dx, float *dgamma, float *dbeta, int relu)
{
	struct bn_key k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_bn_desc_check(d)))
		return rc;
	if (relu && !ws)
		return bt_error(BT_ERR_INVALID, "batch norm with ReLU needs a workspace");
	k = bn_key_of(d);
	k.relu = relu;
	if ((rc = cache_get(cpu, K_BN_BWD, &k, sizeof k, build_bn_bwd, &e)))
		return rc;
	/* oneDNN wants the variance; cpu.h keeps 1/sqrt(var + eps). Only var + eps matters to
	 * oneDNN, which it gets back to float precision even when var is far below eps. */
	float *var = cpu->aux;
	for (int i = 0; i < d->c; i++)
		var[i] = 1.0f / (save_invstd[i] * save_invstd[i]) - d->eps;
	void *p[10] = { (void *)x, (void *)dy, (void *)gamma, (void *)save_mean, var, dx, dgamma,
			dbeta, (void *)gamma /* unread */, (void *)ws };
	return entry_run(cpu, e, p);
}

int bt_cpu_bn_bwd(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x, const void *dy,
		  const float *gamma, const float *save_mean, const float *save_invstd, void *dx,
		  float *dgamma, float *dbeta)
{
	return bn_bwd(cpu, d, x, dy, gamma, save_mean, save_invstd, NULL, dx, dgamma, dbeta, 0);
}

int bt_cpu_bn_relu_bwd(struct bt_cpu *cpu, const struct bt_bn_desc *d, const void *x,
		       const void *dy, const float *gamma, const float *save_mean,
		       const float *save_invstd, const void *ws, void *dx, float *dgamma,
		       float *dbeta)
{
	return bn_bwd(cpu, d, x, dy, gamma, save_mean, save_invstd, ws, dx, dgamma, dbeta, 1);
}

/* ---- pooling ---------------------------------------------------------------------------- */

static struct bt_pool_desc pool_key_of(const struct bt_pool_desc *d)
{
	struct bt_pool_desc k = *d;
	k.max = !!k.max;
	k.count_pad = k.max ? 0 : !!k.count_pad;
	return k;
}

static int pool_fwd_pd(struct bt_cpu *cpu, dnnl_primitive_desc_t *pd,
		       const struct bt_pool_desc *d, dnnl_memory_desc_t *x, dnnl_memory_desc_t *y,
		       dnnl_pooling_v2_desc_t *bwd)
{
	dnnl_dims_t xd = { d->n, d->c, d->h, d->w }, yd = { d->n, d->c, d->oh, d->ow };
	dnnl_dims_t st = { d->sh, d->sw }, ker = { d->kh, d->kw }, dil = { 0, 0 };
	dnnl_dims_t pl = { d->ph, d->pw };
	dnnl_dims_t pr = { pad_right(d->h, d->oh, d->kh, d->sh, 1, d->ph),
			   pad_right(d->w, d->ow, d->kw, d->sw, 1, d->pw) };
	dnnl_alg_kind_t alg = d->max ? dnnl_pooling_max
			      : d->count_pad ? dnnl_pooling_avg_include_padding
					     : dnnl_pooling_avg_exclude_padding;
	dnnl_pooling_v2_desc_t fd;
	dnnl_data_type_t t = dnnl_f32;
	dnnl_status_t s;
	int rc;

	if ((rc = dnn_type(d->dtype, &t)) || (rc = md_init_t(x, 4, xd, dnnl_nhwc, t)) ||
	    (rc = md_init_t(y, 4, yd, dnnl_nhwc, t)))
		return rc;
	s = dnnl_pooling_v2_forward_desc_init(&fd, dnnl_forward_training, alg, x, y, st, ker, dil,
					      pl, pr);
	if (s == dnnl_success && bwd)
		s = dnnl_pooling_v2_backward_desc_init(bwd, alg, x, y, st, ker, dil, pl, pr);
	if (s != dnnl_success)
		return dnnl_fail(s, "pooling descriptor");
	return pd_create(pd, cpu, &fd, NULL, "pooling forward");
}

static int build_pool_fwd(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bt_pool_desc *d = desc;
	dnnl_memory_desc_t x, y;
	const dnnl_memory_desc_t *ws;
	int rc;

	if ((rc = pool_fwd_pd(cpu, &e->pd, d, &x, &y, NULL)))
		return rc;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_SRC, ARG_IN, &x },
		{ DNNL_ARG_DST, ARG_OUT, &y },
		{ DNNL_ARG_WORKSPACE, ARG_OUT, NULL },
	};
	ws = dnnl_primitive_desc_query_md(e->pd, dnnl_query_workspace_md, 0);
	e->ws_bytes = ws ? dnnl_memory_desc_get_size(ws) : 0;
	return entry_build(cpu, e, spec, e->ws_bytes ? 3 : 2);
}

static int build_pool_bwd(struct bt_cpu *cpu, struct bt_entry *e, const void *desc)
{
	const struct bt_pool_desc *d = desc;
	dnnl_memory_desc_t x, y;
	dnnl_pooling_v2_desc_t bd;
	int rc;

	if ((rc = pool_fwd_pd(cpu, &e->hint, d, &x, &y, &bd)) ||
	    (rc = pd_create(&e->pd, cpu, &bd, e->hint, "pooling backward")))
		return rc;
	const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(e->hint,
								     dnnl_query_workspace_md, 0);
	e->ws_bytes = ws ? dnnl_memory_desc_get_size(ws) : 0;
	struct bt_argspec spec[] = {
		{ DNNL_ARG_DIFF_DST, ARG_IN, &y },
		{ DNNL_ARG_DIFF_SRC, ARG_OUT, &x },
		{ DNNL_ARG_WORKSPACE, ARG_IN, NULL },
	};
	return entry_build(cpu, e, spec, e->ws_bytes ? 3 : 2);
}

size_t bt_cpu_pool_ws_bytes(struct bt_cpu *cpu, const struct bt_pool_desc *d)
{
	struct bt_pool_desc k;
	struct bt_entry *e;

	if (!d->max || bt_pool_desc_check(d))
		return 0;
	k = pool_key_of(d);
	if (cache_get(cpu, K_POOL_FWD, &k, sizeof k, build_pool_fwd, &e))
		return 0;
	return e->ws_bytes;
}

int bt_cpu_pool_fwd(struct bt_cpu *cpu, const struct bt_pool_desc *d, const void *x, void *y,
		    void *ws)
{
	struct bt_pool_desc k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_pool_desc_check(d)))
		return rc;
	k = pool_key_of(d);
	if ((rc = cache_get(cpu, K_POOL_FWD, &k, sizeof k, build_pool_fwd, &e)))
		return rc;
	if (e->ws_bytes && !ws)
		return bt_error(BT_ERR_INVALID, "max pooling needs a workspace");
	void *p[3] = { (void *)x, y, ws };
	return entry_run(cpu, e, p);
}

int bt_cpu_pool_bwd(struct bt_cpu *cpu, const struct bt_pool_desc *d, const void *dy,
		    const void *ws, void *dx)
{
	struct bt_pool_desc k;
	struct bt_entry *e;
	int rc;

	if ((rc = bt_pool_desc_check(d)))
		return rc;
	k = pool_key_of(d);
	if ((rc = cache_get(cpu, K_POOL_BWD, &k, sizeof k, build_pool_bwd, &e)))
		return rc;
	if (e->ws_bytes && !ws)
		return bt_error(BT_ERR_INVALID, "max pooling needs a workspace");
	void *p[3] = { (void *)dy, dx, (void *)ws };
	return entry_run(cpu, e, p);
}

/* ---- fully connected -------------------------------------------------------------------- */

static int sgemm(char ta, char tb, int m, int n, int k, const float *a, int lda, const float *b,
		 int ldb, float beta, float *c, int ldc)
{
	dnnl_status_t s = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
	return s == dnnl_success ? BT_OK : dnnl_fail(s, "sgemm");
}

static void bf16_in(float *restrict y, const uint16_t *restrict x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = bt_bf16_to_f32(x[i]);
}

static void bf16_out(uint16_t *restrict y, const float *restrict x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = bt_f32_to_bf16(x[i]);
}

static int fc_fwd32(const struct bt_fc_desc *d, const float *x, const float *w, const float *b,
		    float *y)
{
	/* y = x w^T (+ b): the bias is laid down first and the product added onto it. */
	if (d->bias)
		for (int i = 0; i < d->n; i++)
			memcpy(y + (size_t)i * d->cout, b, sizeof(float) * d->cout);
	return sgemm('N', 'T', d->n, d->cout, d->cin, x, d->cin, w, d->cin, d->bias ? 1.0f : 0.0f,
		     y, d->cout);
}

static int fc_bwd32(const struct bt_fc_desc *d, const float *x, const float *dy, const float *w,
		    float *dx, float *dw, float *db)
{
	int rc;
	if (dx && (rc = sgemm('N', 'N', d->n, d->cin, d->cout, dy, d->cout, w, d->cin, 0.0f, dx,
			      d->cin)))
		return rc;
	/* dw += dy^T x */
	if ((rc = sgemm('T', 'N', d->cout, d->cin, d->n, dy, d->cout, x, d->cin, 1.0f, dw, d->cin)))
		return rc;
	if (d->bias)
		for (int i = 0; i < d->n; i++)
			for (int j = 0; j < d->cout; j++)
				db[j] += dy[(size_t)i * d->cout + j];
	return BT_OK;
}

/* bfloat16: the operands widened to float32 (exact), the float32 kernel, the output rounded
 * once. An fc layer is a sliver of a network's work, and oneDNN 2.6 has no bfloat16 gemm in
 * its C API. */
int bt_cpu_fc_fwd(struct bt_cpu *cpu, const struct bt_fc_desc *d, const void *x, const void *w,
		  const float *b, void *y)
{
	size_t nx, nw, ny;
	float *xf, *wf, *yf;
	int rc;

	if ((rc = bt_fc_desc_check(d)))
		return rc;
	if (d->bias && !b)
		return bt_error(BT_ERR_INVALID, "fully connected with bias needs b");
	if (d->dtype == BT_DTYPE_F32)
		return fc_fwd32(d, x, w, b, y);
	if (d->dtype != BT_DTYPE_BF16)
		return bad_dtype(d->dtype);
	nx = (size_t)d->n * d->cin, nw = (size_t)d->cout * d->cin, ny = (size_t)d->n * d->cout;
	if ((rc = floats_reserve(&cpu->fcb, &cpu->fcb_floats, nx + nw + ny, "fc buffer")))
		return rc;
	xf = cpu->fcb, wf = xf + nx, yf = wf + nw;
	bf16_in(xf, x, nx);
	bf16_in(wf, w, nw);
	if ((rc = fc_fwd32(d, xf, wf, b, yf)))
		return rc;
	bf16_out(y, yf, ny);
	return BT_OK;
}

int bt_cpu_fc_bwd(struct bt_cpu *cpu, const struct bt_fc_desc *d, const void *x, const void *dy,
		  const void *w, void *dx, float *dw, float *db)
{
	size_t nx, nw, ny;
	float *xf, *wf, *dyf, *dxf;
	int rc;

	if ((rc = bt_fc_desc_check(d)))
		return rc;
	if (d->bias && !db)
		return bt_error(BT_ERR_INVALID, "fully connected with bias needs db");
	if (d->dtype == BT_DTYPE_F32)
		return fc_bwd32(d, x, dy, w, dx, dw, db);
	if (d->dtype != BT_DTYPE_BF16)
		return bad_dtype(d->dtype);
	nx = (size_t)d->n * d->cin, nw = (size_t)d->cout * d->cin, ny = (size_t)d->n * d->cout;
	if ((rc = floats_reserve(&cpu->fcb, &cpu->fcb_floats, 2 * nx + nw + ny, "fc buffer")))
		return rc;
	xf = cpu->fcb, wf = xf + nx, dyf = wf + nw, dxf = dyf + ny;
	bf16_in(xf, x, nx);
	bf16_in(wf, w, nw);
	bf16_in(dyf, dy, ny);
	if ((rc = fc_bwd32(d, xf, dyf, wf, dx ? dxf : NULL, dw, db)))
		return rc;
	if (dx)
		bf16_out(dx, dxf, nx);
	return BT_OK;
}

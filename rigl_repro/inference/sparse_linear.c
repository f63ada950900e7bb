/*
 * y = x W^T + b for a CSR weight W (out x in) and a row-major x (rows x in), y row-major (rows x out): the native
 * product of rigl_repro.inference's CsrLinear (rigl_repro/inference/native.py builds and loads this file).
 *
 * Why by hand: torch's CPU CSR product (MKL's sparse BLAS) reads the dense operand with a layout it does not
 * choose and reached 1.4-2x over dense where the bandwidth allows 5x or more (docs/benchmarks.md, "Sparse
 * inference on the CPU"). Here x is packed TILE rows at a time into a column tile (in x TILE, contiguous), so
 * each non-zero weight w[i, j] costs one broadcast and TILE / VW fused multiply-adds of x's column j into
 * TILE accumulators that stay in vector registers; the tile of the dense operand (in * TILE floats) stays in
 * the L2 cache while every output row reads it. Outputs are summed in the CSR order, the same for every
 * thread count, so results do not depend on the threads.
 *
 * Threads: OpenMP, each thread over a share of the row tiles, or, when there are fewer tiles than threads, over
 * a share of the output rows balanced by their non-zeros. Built with -fopenmp against libgomp.so.1, the library
 * resolves to the OpenMP runtime torch has already loaded (the same soname), so it runs on torch's own thread
 * pool: threads of a pool of its own were measured to start on a core torch's idle threads still spin on, and
 * to gain nothing from the second core. Without OpenMP it runs on one thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VW 8                  /* floats per vector: 256-bit, the width measured fastest here (also on AVX-512) */
#define TILE 64               /* rows of x per packed tile: 64 measured fastest of 16, 32, 64, 128 */
#define NV (TILE / VW)        /* vector accumulators per output row */
#define MIN_TILED_ROWS 2      /* a single leftover row goes through the one-row path */
#define MAX_THREADS 256

typedef float vec __attribute__((vector_size(4 * VW)));

static inline vec load_vec(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store_vec(float *p, vec v) { memcpy(p, &v, sizeof v); }
static inline vec splat(float w) { vec v; for (int k = 0; k < VW; ++k) v[k] = w; return v; }

typedef struct {
    const int32_t *crow, *col;
    const float *val, *bias, *x;
    float *y;
    int64_t out, in;
    int64_t row_begin, row_end;   /* rows of x and y this task computes */
    int64_t out_begin, out_end;   /* outputs (rows of W) this task computes */
    int status;
} task_t;

/* n (<= width) rows of x packed as columns: xt[j * width + t] = x[t, j], zero beyond n. */
static void pack_tile(const float *restrict x, int64_t in, int64_t n, int64_t width, float *restrict xt) {
    if (n < width) memset(xt, 0, sizeof(float) * width * in);
    for (int64_t t = 0; t < n; ++t) {
        const float *restrict row = x + t * in;
        for (int64_t j = 0; j < in; ++j) xt[j * width + t] = row[j];
    }
}

/* The product over one packed tile of WIDTH columns (NV vectors of accumulators per output row): one
 * function per width, so that the accumulators' count is a constant the compiler keeps in registers. */
#define TILE_PRODUCT(NV)                                                                                    \
static void tile_product_##NV(const task_t *task, const float *restrict xt, float *restrict yt) {            \
    const int32_t *restrict crow = task->crow, *restrict col = task->col;                                  \
    const float *restrict val = task->val, *restrict bias = task->bias;                                    \
    for (int64_t i = task->out_begin; i < task->out_end; ++i) {                                            \
        vec acc[NV];                                                                                       \
        const vec b = splat(bias ? bias[i] : 0.0f);                                                        \
        for (int k = 0; k < NV; ++k) acc[k] = b;                                                           \
        for (int32_t p = crow[i]; p < crow[i + 1]; ++p) {                                                  \
            const vec w = splat(val[p]);                                                                   \
            const float *restrict column = xt + (int64_t)col[p] * (NV * VW);                               \
            _Pragma("GCC unroll 16")                                                                       \
            for (int k = 0; k < NV; ++k) acc[k] += w * load_vec(column + VW * k);                          \
        }                                                                                                  \
        float *restrict dst = yt + (i - task->out_begin) * (NV * VW);                                      \
        _Pragma("GCC unroll 16")                                                                           \
        for (int k = 0; k < NV; ++k) store_vec(dst + VW * k, acc[k]);                                      \
    }                                                                                                      \
}
TILE_PRODUCT(1)
TILE_PRODUCT(2)
TILE_PRODUCT(4)
TILE_PRODUCT(8)

/* Rows first_row .. first_row + n (n <= TILE) through the narrowest tile that holds them. */
static void tile_rows(const task_t *task, int64_t first_row, int64_t n, float *restrict xt, float *restrict yt) {
    const int64_t width = n <= VW ? VW : n <= 2 * VW ? 2 * VW : n <= 4 * VW ? 4 * VW : TILE;
    const int64_t out = task->out;
    pack_tile(task->x + first_row * task->in, task->in, n, width, xt);
    switch (width / VW) {
        case 1: tile_product_1(task, xt, yt); break;
        case 2: tile_product_2(task, xt, yt); break;
        case 4: tile_product_4(task, xt, yt); break;
        default: tile_product_8(task, xt, yt); break;
    }
    float *restrict y = task->y + first_row * out;
    for (int64_t t = 0; t < n; ++t)
        for (int64_t i = task->out_begin; i < task->out_end; ++i)
            y[t * out + i] = yt[(i - task->out_begin) * width + t];
}

/* One row of x at a time (a sparse matrix-vector product per row): for the few rows a tile would waste. */
static void row_product(const task_t *task, int64_t row) {
    const int32_t *restrict crow = task->crow, *restrict col = task->col;
    const float *restrict val = task->val, *restrict x = task->x + row * task->in;
    float *restrict y = task->y + row * task->out;
    for (int64_t i = task->out_begin; i < task->out_end; ++i) {
        float acc = task->bias ? task->bias[i] : 0.0f;
        for (int32_t p = crow[i]; p < crow[i + 1]; ++p) acc += val[p] * x[col[p]];
        y[i] = acc;
    }
}

static void *run_task(void *arg) {
    task_t *task = arg;
    int64_t row = task->row_begin;
    float *xt = NULL, *yt = NULL;
    if (task->row_end - row >= MIN_TILED_ROWS) {
        xt = malloc(sizeof(float) * TILE * (size_t)(task->in + (task->out_end - task->out_begin)));
        if (xt == NULL) { task->status = 1; return NULL; }
        yt = xt + TILE * task->in;
    }
    for (; task->row_end - row >= MIN_TILED_ROWS; row += TILE)
        tile_rows(task, row, task->row_end - row < TILE ? task->row_end - row : TILE, xt, yt);
    for (; row < task->row_end; ++row) row_product(task, row);
    free(xt);
    task->status = 0;
    return NULL;
}

/* The first output row whose non-zeros before it reach `target` (crow is non-decreasing). */
static int64_t output_at(const int32_t *crow, int64_t out, int64_t target) {
    int64_t lo = 0, hi = out;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (crow[mid] < target) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Returns 0 on success, 1 when memory for a tile ran out (y is then incomplete). */
int rigl_sparse_linear(const int32_t *crow, const int32_t *col, const float *val, const float *bias, int64_t out,
                       int64_t in, int64_t rows, const float *x, float *y, int threads) {
    task_t tasks[MAX_THREADS];
    const int64_t tiles = (rows + TILE - 1) / TILE;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    const int by_rows = tiles >= threads;
    if (!by_rows && threads > out) threads = out > 0 ? (int)out : 1;
    const int64_t nnz = crow[out];
    for (int k = 0; k < threads; ++k) {
        task_t *t = &tasks[k];
        *t = (task_t){crow, col, val, bias, x, y, out, in, 0, rows, 0, out, 0};
        if (by_rows) {  /* whole tiles per thread; the last takes the leftover rows */
            t->row_begin = TILE * (tiles * k / threads);
            t->row_end = k + 1 == threads ? rows : TILE * (tiles * (k + 1) / threads);
        } else {
            t->out_begin = output_at(crow, out, nnz * k / threads);
            t->out_end = k + 1 == threads ? out : output_at(crow, out, nnz * (k + 1) / threads);
        }
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int k = 0; k < threads; ++k) run_task(&tasks[k]);
    int status = 0;
    for (int k = 0; k < threads; ++k) status |= tasks[k].status;
    return status;
}

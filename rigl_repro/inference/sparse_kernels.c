/*
 * Sparse products for rigl_repro.inference (rigl_repro/inference/native.py builds and loads this file), each
 * with a CSR weight W (out x K) and a dense input:
 *   rigl_sparse_linear: y = x W^T + b, x row-major (rows x K), y row-major (rows x out): CsrLinear;
 *   rigl_sparse_conv2d: a 2-d convolution of an NCHW input with W = the OIHW weight flattened to
 *     out x (C * KH * KW), y NCHW: CsrConv2d. At stride 1 it reads a zero-padded copy of each image in place
 *     (run_direct_conv); at other strides its "rows" are the output pixels, and a tile's columns are gathered
 *     from the input as they are packed (im2col one tile at a time: the unfolded input, KH * KW times larger
 *     than the input, is never made whole).
 *
 * Why by hand: torch's CPU CSR product (MKL's sparse BLAS) reads the dense operand with a layout it does not
 * choose and reached 1.4-2x over dense where reading only the non-zeros allows far more (docs/benchmarks.md,
 * "Sparse inference on the CPU"), and torch has no sparse convolution on the CPU. Here the input is packed
 * TILE rows at a time into a column tile (K x TILE, contiguous), so each non-zero weight w[i, j] costs one
 * broadcast and TILE / VW fused multiply-adds of the tile's column j into TILE accumulators that stay in
 * vector registers; the tile (K * TILE floats) stays in the L2 cache while every output row reads it. Outputs
 * are summed in the CSR order, the same for every thread count, so results do not depend on the threads.
 *
 * Threads: OpenMP, each thread over a share of the row tiles (of the images, for the direct convolution), or,
 * when there are fewer than threads, over a share of the output rows balanced by their non-zeros. Built with
 * -fopenmp against libgomp.so.1, the library resolves to the OpenMP runtime torch has already loaded (the same
 * soname), so it runs on torch's own thread pool: threads of a pool of its own were measured to start on a
 * core torch's idle threads still spin on, and to gain nothing from the second core. Without OpenMP it runs on
 * one thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VW 8                  /* floats per vector: 256-bit, the width measured fastest here (also on AVX-512) */
#define TILE 64               /* rows per packed tile: 64 measured fastest of 16, 32, 64, 128 */
#define MAX_THREADS 256

typedef float vec __attribute__((vector_size(4 * VW)));

static inline vec load_vec(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store_vec(float *p, vec v) { memcpy(p, &v, sizeof v); }
static inline vec splat(float w) { vec v; for (int k = 0; k < VW; ++k) v[k] = w; return v; }

/* A convolution's shape: NCHW input, the weight's OIHW flattened to out x (channels * kernel_h * kernel_w). */
typedef struct {
    int64_t batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
        dilation_w, out_h, out_w;
} conv_t;

typedef struct {
    const int32_t *crow, *col;
    const float *val, *bias, *x;
    float *y;
    int64_t out, k;               /* W is out x k */
    int64_t row_begin, row_end;   /* rows (a linear layer's input rows, a convolution's output pixels) */
    int64_t out_begin, out_end;   /* outputs (rows of W) this task computes */
    const conv_t *conv;           /* NULL for a linear layer */
    int dot;                      /* a linear layer of one row: a sparse dot product per output, no tile */
    int status;
} task_t;

/* Rows first .. first + n of a linear layer's x as the columns of a tile: xt[j * width + t] = x[first + t, j]. */
static void pack_rows(const task_t *task, int64_t first, int64_t n, int64_t width, float *restrict xt) {
    const int64_t k = task->k;
    for (int64_t t = 0; t < n; ++t) {
        const float *restrict row = task->x + (first + t) * k;
        for (int64_t j = 0; j < k; ++j) xt[j * width + t] = row[j];
    }
}

/* Output pixels first .. first + n of a convolution as the columns of a tile: column t holds the input
 * values pixel first + t multiplies, in the weight's (channel, ky, kx) order, zero where padding is read. The
 * tile's pixels fall into runs along output rows; for each run and kernel offset the input row read is one
 * strided range, so the copy has no per-value bounds test (that test made packing dominate the product). */
static void pack_pixels(const task_t *task, int64_t first, int64_t n, int64_t width, float *restrict xt) {
    const conv_t *g = task->conv;
    const int64_t plane = g->height * g->width, pixels = g->out_h * g->out_w;
    int64_t run_t[TILE], run_len[TILE], run_image[TILE], run_top[TILE], run_left[TILE], runs = 0;
    for (int64_t t = 0; t < n;) {  /* runs: consecutive pixels of one output row of one image */
        const int64_t p = first + t, pixel = p % pixels, ox = pixel % g->out_w;
        const int64_t len = g->out_w - ox < n - t ? g->out_w - ox : n - t;
        run_t[runs] = t;
        run_len[runs] = len;
        run_image[runs] = (p / pixels) * g->channels * plane;
        run_top[runs] = (pixel / g->out_w) * g->stride_h - g->pad_h;
        run_left[runs] = ox * g->stride_w - g->pad_w;
        ++runs;
        t += len;
    }
    const int64_t sw = g->stride_w;
    float *restrict dst = xt;
    for (int64_t c = 0; c < g->channels; ++c)
        for (int64_t ky = 0; ky < g->kernel_h; ++ky)
            for (int64_t kx = 0; kx < g->kernel_w; ++kx, dst += width)
                for (int64_t r = 0; r < runs; ++r) {
                    float *restrict out = dst + run_t[r];
                    const int64_t len = run_len[r], iy = run_top[r] + ky * g->dilation_h;
                    if (iy < 0 || iy >= g->height) {
                        for (int64_t u = 0; u < len; ++u) out[u] = 0.0f;
                        continue;
                    }
                    const int64_t ix0 = run_left[r] + kx * g->dilation_w;
                    /* the run's values u with 0 <= ix0 + u * sw < width: [lo, hi) */
                    int64_t lo = ix0 >= 0 ? 0 : (-ix0 + sw - 1) / sw;
                    int64_t hi = ix0 >= g->width ? 0 : (g->width - 1 - ix0) / sw + 1;
                    if (lo > len) lo = len;
                    if (hi > len) hi = len;
                    if (hi < lo) hi = lo;
                    const float *restrict row = task->x + run_image[r] + c * plane + iy * g->width;
                    for (int64_t u = 0; u < lo; ++u) out[u] = 0.0f;
                    if (sw == 1)  /* runs are short (an output row, at most 64): a loop, not a memcpy call */
                        for (int64_t u = lo; u < hi; ++u) out[u] = row[ix0 + u];
                    else
                        for (int64_t u = lo; u < hi; ++u) out[u] = row[ix0 + u * sw];
                    for (int64_t u = hi; u < len; ++u) out[u] = 0.0f;
                }
}

/* yt (this task's outputs x width) written back: row-major rows, or NCHW pixels. */
static void unpack(const task_t *task, int64_t first, int64_t n, int64_t width, const float *restrict yt) {
    const int64_t out = task->out;
    if (task->conv == NULL) {
        for (int64_t t = 0; t < n; ++t) {
            float *restrict y = task->y + (first + t) * out;
            for (int64_t i = task->out_begin; i < task->out_end; ++i) y[i] = yt[(i - task->out_begin) * width + t];
        }
        return;
    }
    const int64_t pixels = task->conv->out_h * task->conv->out_w;
    int64_t at[TILE];
    for (int64_t t = 0; t < n; ++t) at[t] = ((first + t) / pixels) * out * pixels + (first + t) % pixels;
    for (int64_t i = task->out_begin; i < task->out_end; ++i) {
        const float *restrict src = yt + (i - task->out_begin) * width;
        float *restrict y = task->y + i * pixels;
        for (int64_t t = 0; t < n; ++t) y[at[t]] = src[t];
    }
}

/* The product over one packed tile of NV * VW columns: one function per width, so that the accumulators'
 * count is a constant the compiler keeps in registers. */
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

/* Rows first .. first + n (n <= TILE) through the narrowest tile that holds them. */
static void tile_rows(const task_t *task, int64_t first, int64_t n, float *restrict xt, float *restrict yt) {
    const int64_t width = n <= VW ? VW : n <= 2 * VW ? 2 * VW : n <= 4 * VW ? 4 * VW : TILE;
    if (n < width) memset(xt, 0, sizeof(float) * width * task->k);
    if (task->conv == NULL) pack_rows(task, first, n, width, xt); else pack_pixels(task, first, n, width, xt);
    switch (width / VW) {
        case 1: tile_product_1(task, xt, yt); break;
        case 2: tile_product_2(task, xt, yt); break;
        case 4: tile_product_4(task, xt, yt); break;
        default: tile_product_8(task, xt, yt); break;
    }
    unpack(task, first, n, width, yt);
}

/* One row of a linear layer's x (a sparse dot product per output): a tile would waste 7 of its 8 columns. */
static void row_product(const task_t *task, int64_t row) {
    const int32_t *restrict crow = task->crow, *restrict col = task->col;
    const float *restrict val = task->val, *restrict x = task->x + row * task->k;
    float *restrict y = task->y + row * task->out;
    for (int64_t i = task->out_begin; i < task->out_end; ++i) {
        float acc = task->bias ? task->bias[i] : 0.0f;
        for (int32_t p = crow[i]; p < crow[i + 1]; ++p) acc += val[p] * x[col[p]];
        y[i] = acc;
    }
}

static void run_task(task_t *task) {
    int64_t row = task->row_begin;
    const int64_t tiled_end = task->dot ? row : task->row_end;
    float *xt = NULL;
    if (tiled_end > row) {
        xt = malloc(sizeof(float) * TILE * (size_t)(task->k + (task->out_end - task->out_begin) + 1));
        if (xt == NULL) { task->status = 1; return; }
    }
    for (; row < tiled_end; row += TILE)
        tile_rows(task, row, tiled_end - row < TILE ? tiled_end - row : TILE, xt, xt + TILE * task->k);
    for (row = tiled_end; row < task->row_end; ++row) row_product(task, row);
    free(xt);
    task->status = 0;
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

/* Split `work` (rows and all outputs filled in) among threads and run it: whole tiles per thread, the last
 * taking the leftover rows, or, with fewer tiles than threads, outputs balanced by non-zeros. Returns 0, or 1
 * when memory for a tile ran out (y is then incomplete). */
static int run(task_t work, int threads) {
    task_t tasks[MAX_THREADS];
    const int64_t rows = work.row_end, tiles = (rows + TILE - 1) / TILE, nnz = work.crow[work.out];
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    const int by_rows = tiles >= threads;
    if (!by_rows && threads > work.out) threads = work.out > 0 ? (int)work.out : 1;
    for (int k = 0; k < threads; ++k) {
        task_t *t = &tasks[k];
        *t = work;
        if (by_rows) {
            t->row_begin = TILE * (tiles * k / threads);
            t->row_end = k + 1 == threads ? rows : TILE * (tiles * (k + 1) / threads);
        } else {
            t->out_begin = output_at(work.crow, work.out, nnz * k / threads);
            t->out_end = k + 1 == threads ? work.out : output_at(work.crow, work.out, nnz * (k + 1) / threads);
        }
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int k = 0; k < threads; ++k) run_task(&tasks[k]);
    int status = 0;
    for (int k = 0; k < threads; ++k) status |= tasks[k].status;
    return status;
}

int rigl_sparse_linear(const int32_t *crow, const int32_t *col, const float *val, const float *bias, int64_t out,
                       int64_t in, int64_t rows, const float *x, float *y, int threads) {
    const task_t work = {crow, col, val, bias, x, y, out, in, 0, rows, 0, out, NULL, rows == 1, 0};
    return run(work, threads);
}

/* Stride-1 convolutions, computed straight from a zero-padded copy of one image at a time, without packing:
 * for stride 1, the input values 8 consecutive output pixels of a row multiply with one weight are 8
 * consecutive floats of the padded image, at an offset that depends on the weight's (channel, ky, kx) only.
 * A tile is up to 8 such vectors (64 pixels) whose accumulators stay in registers; each non-zero weight costs
 * one broadcast and a fused multiply-add per vector, reading the padded image (in the L2 cache) in place.
 * Packing the unfolded input instead writes kernel_h * kernel_w floats per input value, which took most of
 * the time of WRN-22-2's layers (docs/benchmarks.md). */
typedef struct {
    const int32_t *crow;
    const float *val, *bias, *x;
    const int64_t *offset;        /* per non-zero weight: its (channel, ky, kx) as an offset in the padded image */
    float *y;
    const conv_t *g;
    int64_t out, padded_h, padded_w;
    int64_t image_begin, image_end, out_begin, out_end;
    int status;
} direct_t;

#define DIRECT_PRODUCT(NV)                                                                                  \
static void direct_product_##NV(const direct_t *d, const float *const *base, int64_t i, float *restrict res) { \
    vec acc[NV];                                                                                           \
    const vec b = splat(d->bias ? d->bias[i] : 0.0f);                                                      \
    for (int k = 0; k < NV; ++k) acc[k] = b;                                                               \
    for (int32_t p = d->crow[i]; p < d->crow[i + 1]; ++p) {                                                \
        const vec w = splat(d->val[p]);                                                                    \
        const int64_t off = d->offset[p];                                                                  \
        _Pragma("GCC unroll 8")                                                                            \
        for (int k = 0; k < NV; ++k) acc[k] += w * load_vec(base[k] + off);                                \
    }                                                                                                      \
    _Pragma("GCC unroll 8")                                                                                \
    for (int k = 0; k < NV; ++k) store_vec(res + VW * k, acc[k]);                                          \
}
DIRECT_PRODUCT(1)
DIRECT_PRODUCT(2)
DIRECT_PRODUCT(4)
DIRECT_PRODUCT(8)

static void run_direct(direct_t *d) {
    const conv_t *g = d->g;
    const int64_t hp = d->padded_h, wp = d->padded_w, plane = hp * wp;
    const int64_t per_row = (g->out_w + VW - 1) / VW, vectors = g->out_h * per_row;
    float *padded = calloc((size_t)(g->channels * plane) + 1, sizeof(float));  /* + 1: never calloc(0) */
    if (padded == NULL) { d->status = 1; return; }
    const float *base[8];
    int64_t at[8], valid[8];
    float res[8 * VW];
    for (int64_t image = d->image_begin; image < d->image_end; ++image) {
        for (int64_t c = 0; c < g->channels; ++c)
            for (int64_t iy = 0; iy < g->height; ++iy)
                memcpy(padded + c * plane + (iy + g->pad_h) * wp + g->pad_w,
                       d->x + ((image * g->channels + c) * g->height + iy) * g->width, sizeof(float) * g->width);
        for (int64_t first = 0; first < vectors; first += 8) {
            const int64_t n = vectors - first < 8 ? vectors - first : 8;
            for (int64_t k = 0; k < 8; ++k) {
                const int64_t v = first + (k < n ? k : 0), oy = v / per_row, ox = (v % per_row) * VW;
                base[k] = padded + oy * wp + ox;  /* stride 1: pixel (oy, ox) reads from (oy, ox) on */
                at[k] = oy * g->out_w + ox;
                valid[k] = g->out_w - ox < VW ? g->out_w - ox : VW;
            }
            for (int64_t i = d->out_begin; i < d->out_end; ++i) {
                if (n > 4) direct_product_8(d, base, i, res);
                else if (n > 2) direct_product_4(d, base, i, res);
                else if (n > 1) direct_product_2(d, base, i, res);
                else direct_product_1(d, base, i, res);
                float *restrict y = d->y + (image * d->out + i) * g->out_h * g->out_w;
                for (int64_t k = 0; k < n; ++k) memcpy(y + at[k], res + VW * k, sizeof(float) * valid[k]);
            }
        }
    }
    free(padded);
    d->status = 0;
}

static int run_direct_conv(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
                           int64_t out, const conv_t *g, const float *x, float *y, int threads) {
    /* padded rows are VW floats wider than the padding needs: the last vector of an output row reads up to
     * VW - 1 floats past the row's last output pixel's inputs (lanes whose outputs are discarded) */
    const int64_t hp = g->height + 2 * g->pad_h, wp = g->width + 2 * g->pad_w + VW;
    const int64_t nnz = crow[out], taps = g->kernel_h * g->kernel_w;
    int64_t *offset = malloc(sizeof(int64_t) * (size_t)(nnz > 0 ? nnz : 1));
    if (offset == NULL) return 1;
    for (int64_t p = 0; p < nnz; ++p) {
        const int64_t j = col[p], c = j / taps, ky = (j % taps) / g->kernel_w, kx = j % g->kernel_w;
        offset[p] = c * hp * wp + ky * g->dilation_h * wp + kx * g->dilation_w;
    }
    direct_t tasks[MAX_THREADS];
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    const int by_images = g->batch >= threads;
    if (!by_images && threads > out) threads = out > 0 ? (int)out : 1;
    for (int k = 0; k < threads; ++k) {
        direct_t *t = &tasks[k];
        *t = (direct_t){crow, val, bias, x, offset, y, g, out, hp, wp, 0, g->batch, 0, out, 0};
        if (by_images) {
            t->image_begin = g->batch * k / threads;
            t->image_end = g->batch * (k + 1) / threads;
        } else {
            t->out_begin = output_at(crow, out, nnz * k / threads);
            t->out_end = k + 1 == threads ? out : output_at(crow, out, nnz * (k + 1) / threads);
        }
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int k = 0; k < threads; ++k) run_direct(&tasks[k]);
    free(offset);
    int status = 0;
    for (int k = 0; k < threads; ++k) status |= tasks[k].status;
    return status;
}

/* shape: batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
 * dilation_w, out_h, out_w (conv_t's order). Stride 1 runs directly on the padded input, other strides through
 * packed tiles of the unfolded input. */
int rigl_sparse_conv2d(const int32_t *crow, const int32_t *col, const float *val, const float *bias, int64_t out,
                       const int64_t *shape, const float *x, float *y, int threads) {
    conv_t conv;
    memcpy(&conv, shape, sizeof conv);
    if (conv.stride_h == 1 && conv.stride_w == 1)
        return run_direct_conv(crow, col, val, bias, out, &conv, x, y, threads);
    const task_t work = {crow, col, val, bias, x, y, out, conv.channels * conv.kernel_h * conv.kernel_w, 0,
                         conv.batch * conv.out_h * conv.out_w, 0, out, &conv, 0, 0};
    return run(work, threads);
}

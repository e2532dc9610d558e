/* Matrix-vector products for one decoding step: y[m, o] = sum_i x[m, i] * w[o, i].
 *
 * A decoding step multiplies one or two rows of activations (two with
 * classifier-free guidance) by every weight of the LM. Each weight is used
 * once or twice, so the step is bound by how fast the weights can be read
 * from memory, not by arithmetic. PyTorch's CPU kernels read bfloat16 and
 * int8 weights at about half the rate they read float32 ones (measured in
 * benchmarks/README.md); these loops read them 1.5-3x faster than those, and
 * float32 ones about as fast as PyTorch (for layer_step, below). They
 * are plain C with AVX-512 intrinsics where the CPU has them and a portable
 * loop elsewhere (minicraft/fast/kernels.py compiles this file with -O3
 * -march=native), and OpenMP splits the output rows across PyTorch's threads.
 *
 * Not handled: more than MAX_ROWS activation rows (prefill uses PyTorch's
 * GEMM), transposed or strided layouts (callers pass contiguous tensors).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 16      /* activation rows (kernels.py sends bfloat16 weights at most 4: PyTorch is faster beyond) */
#define BLOCK 4         /* output rows per task: the dot4x2 functions below take four */

static inline float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;          /* bfloat16 is the top half of a float32 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {  /* round to nearest even, as PyTorch does */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);   /* NaN stays NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* The activations, as float32, whatever the caller's dtype. */
static void load_rows(const void *x, int x_bf16, float *out, int64_t n) {
    if (x_bf16) {
        const uint16_t *h = (const uint16_t *)x;
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_float(h[i]);
    } else {
        memcpy(out, x, (size_t)n * sizeof(float));
    }
}

static inline void store(void *y, int y_bf16, int64_t index, float value) {
    if (y_bf16) ((uint16_t *)y)[index] = float_to_bf16(value);
    else ((float *)y)[index] = value;
}

/* dot4x2: four weight rows u0..u3 against two activation rows x0, x1 (x1 may equal x0), length I:
 * out[r][m] = sum_i u_r[i] * x_m[i]. With AVX-512, 16 weights per instruction; the portable loop after
 * it finishes what is left (all of it on CPUs without AVX-512). */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline __m512 load16_bf16(const uint16_t *p) {      /* 16 bfloat16 -> 16 float32: shift into the top half */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline __m512 load16_int8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
#define FMA4X2(LOAD, OFFSET)                                                                                   \
    {   const __m512 a = _mm512_loadu_ps(x0 + i + (OFFSET)), b = _mm512_loadu_ps(x1 + i + (OFFSET));         \
        __m512 w = LOAD(u0 + i + (OFFSET)); s00 = _mm512_fmadd_ps(w, a, s00); s01 = _mm512_fmadd_ps(w, b, s01); \
        w = LOAD(u1 + i + (OFFSET));        s10 = _mm512_fmadd_ps(w, a, s10); s11 = _mm512_fmadd_ps(w, b, s11); \
        w = LOAD(u2 + i + (OFFSET));        s20 = _mm512_fmadd_ps(w, a, s20); s21 = _mm512_fmadd_ps(w, b, s21); \
        w = LOAD(u3 + i + (OFFSET));        s30 = _mm512_fmadd_ps(w, a, s30); s31 = _mm512_fmadd_ps(w, b, s31); }
/* LINE weights fill a 64-byte cache line. While a line of each of the four rows is multiplied, the same
 * line of the next four rows is fetched (software prefetch): rows of 1-4 KB are too short for the
 * hardware prefetcher to get going, and without this the loop waits on memory half the time. */
#define DOT4X2_WIDE(LOAD, LINE)                                                                            \
    __m512 s00 = _mm512_setzero_ps(), s01 = s00, s10 = s00, s11 = s00,                                     \
           s20 = s00, s21 = s00, s30 = s00, s31 = s00;                                                     \
    for (; i + LINE <= I; i += LINE) {                                                                     \
        _mm_prefetch((const char *)(u0 + i + 4 * I), _MM_HINT_T0);                                         \
        _mm_prefetch((const char *)(u1 + i + 4 * I), _MM_HINT_T0);                                         \
        _mm_prefetch((const char *)(u2 + i + 4 * I), _MM_HINT_T0);                                         \
        _mm_prefetch((const char *)(u3 + i + 4 * I), _MM_HINT_T0);                                         \
        for (int k = 0; k < LINE; k += 16) FMA4X2(LOAD, k)                                                     \
    }                                                                                                      \
    for (; i + 16 <= I; i += 16) FMA4X2(LOAD, 0)                                                               \
    out[0][0] = _mm512_reduce_add_ps(s00); out[0][1] = _mm512_reduce_add_ps(s01);                          \
    out[1][0] = _mm512_reduce_add_ps(s10); out[1][1] = _mm512_reduce_add_ps(s11);                          \
    out[2][0] = _mm512_reduce_add_ps(s20); out[2][1] = _mm512_reduce_add_ps(s21);                          \
    out[3][0] = _mm512_reduce_add_ps(s30); out[3][1] = _mm512_reduce_add_ps(s31);
#else
#define DOT4X2_WIDE(LOAD, LINE)
#endif

#define DOT4X2(NAME, WTYPE, SCALAR, LOAD, LINE)                                                                  \
static inline void NAME(const WTYPE *u0, const WTYPE *u1, const WTYPE *u2, const WTYPE *u3,               \
                        const float *x0, const float *x1, int64_t I, float out[4][2]) {                    \
    int64_t i = 0;                                                                                         \
    for (int r = 0; r < 4; r++) out[r][0] = out[r][1] = 0;                                                 \
    DOT4X2_WIDE(LOAD, LINE)                                                                                \
    for (; i < I; i++) {                                                                                   \
        const float w0 = SCALAR(u0[i]), w1 = SCALAR(u1[i]), w2 = SCALAR(u2[i]), w3 = SCALAR(u3[i]);        \
        out[0][0] += w0 * x0[i]; out[0][1] += w0 * x1[i]; out[1][0] += w1 * x0[i]; out[1][1] += w1 * x1[i];\
        out[2][0] += w2 * x0[i]; out[2][1] += w2 * x1[i]; out[3][0] += w3 * x0[i]; out[3][1] += w3 * x1[i];\
    }                                                                                                      \
}
#define AS_FLOAT(v) ((float)(v))
DOT4X2(dot4x2_bf16, uint16_t, bf16_to_float, load16_bf16, 32)
DOT4X2(dot4x2_int8, int8_t, AS_FLOAT, load16_int8, 64)
DOT4X2(dot4x2_f32, float, AS_FLOAT, _mm512_loadu_ps, 16)

/* y[m, o] = (sum_i x[m, i] w[o, i]) · scale[o] + bias[o], BLOCK output rows per task, split over threads.
 * Every weight read from memory serves two activation rows (a CFG pair) while it is in a register. */
#define ROWS(NAME, WTYPE, DOT)                                                                             \
static void NAME(const float *xf, const WTYPE *w, const float *scale, const float *bias,                  \
                 void *y, int y_bf16, int M, int64_t O, int64_t I) {                                       \
    _Pragma("omp parallel for schedule(static)")                                                           \
    for (int64_t o0 = 0; o0 < O; o0 += BLOCK) {                                                            \
        const WTYPE *u[BLOCK];                                                                             \
        for (int r = 0; r < BLOCK; r++) u[r] = w + (o0 + r < O ? o0 + r : O - 1) * I;  /* tail: repeat */  \
        for (int m = 0; m < M; m += 2) {                                                                   \
            const float *x0 = xf + m * I, *x1 = m + 1 < M ? x0 + I : x0;                                   \
            float out[BLOCK][2];                                                                           \
            DOT(u[0], u[1], u[2], u[3], x0, x1, I, out);                                                   \
            for (int r = 0; r < BLOCK && o0 + r < O; r++)                                                  \
                for (int k = 0; k < 2 && m + k < M; k++) {                                                 \
                    float v = out[r][k];                                                                   \
                    if (scale) v *= scale[o0 + r];                                                         \
                    if (bias) v += bias[o0 + r];                                                           \
                    store(y, y_bf16, (m + k) * O + o0 + r, v);                                             \
                }                                                                                          \
        }                                                                                                  \
    }                                                                                                      \
}
ROWS(bf16_rows, uint16_t, dot4x2_bf16)
ROWS(int8_rows, int8_t, dot4x2_int8)
ROWS(f32_rows, float, dot4x2_f32)

/* int8 weights against bfloat16 activations, in integers (AVX-512 VNNI). In float32 each int8 weight costs
 * a widening, a conversion and one multiply-add per activation row; with both cores streaming weights, that
 * arithmetic, not memory, sets the pace (benchmarks/README.md). vpdpwssd multiplies 32 int16 pairs and adds
 * them into 16 int32 sums in one instruction, after a single widening of the weights. So each activation row
 * is scaled by a power of two to 16-bit integers (|xq| <= 2^15): a bfloat16 value has 8 significant bits, so
 * every value at least 1/128 of the row's largest stays exact, and the others are rounded by at most
 * max|x|·2^-15. The int32 sums are exact (under 2^31 for up to 8192 inputs). float32 activations never come
 * here: they would lose more than float32 rounding does. */
#define INT16_MAX_INPUTS 8192
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
static inline void dot4x2_int16(const int8_t *u0, const int8_t *u1, const int8_t *u2, const int8_t *u3,
                                const int16_t *x0, const int16_t *x1, int64_t I, int32_t out[4][2]) {
    __m512i s00 = _mm512_setzero_si512(), s01 = s00, s10 = s00, s11 = s00,   /* s{row}{x}: 16 int32 sums each */
            s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    int64_t i = 0;
#define DPWSSD(U, S0, S1)                                                   /* 32 weights of row U, both x */ \
    { const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)((U) + i + k)));            \
      S0 = _mm512_dpwssd_epi32(S0, w, a); S1 = _mm512_dpwssd_epi32(S1, w, b); }
    for (; i + 64 <= I; i += 64) {                      /* a cache line of each row; prefetch as in DOT4X2_WIDE */
        _mm_prefetch((const char *)(u0 + i + 4 * I), _MM_HINT_T0);
        _mm_prefetch((const char *)(u1 + i + 4 * I), _MM_HINT_T0);
        _mm_prefetch((const char *)(u2 + i + 4 * I), _MM_HINT_T0);
        _mm_prefetch((const char *)(u3 + i + 4 * I), _MM_HINT_T0);
        for (int k = 0; k < 64; k += 32) {
            const __m512i a = _mm512_loadu_si512(x0 + i + k), b = _mm512_loadu_si512(x1 + i + k);
            DPWSSD(u0, s00, s01) DPWSSD(u1, s10, s11) DPWSSD(u2, s20, s21) DPWSSD(u3, s30, s31)
        }
    }
#undef DPWSSD
    out[0][0] = _mm512_reduce_add_epi32(s00); out[0][1] = _mm512_reduce_add_epi32(s01);
    out[1][0] = _mm512_reduce_add_epi32(s10); out[1][1] = _mm512_reduce_add_epi32(s11);
    out[2][0] = _mm512_reduce_add_epi32(s20); out[2][1] = _mm512_reduce_add_epi32(s21);
    out[3][0] = _mm512_reduce_add_epi32(s30); out[3][1] = _mm512_reduce_add_epi32(s31);
    for (; i < I; i++) {
        const int32_t w0 = u0[i], w1 = u1[i], w2 = u2[i], w3 = u3[i];
        out[0][0] += w0 * x0[i]; out[0][1] += w0 * x1[i]; out[1][0] += w1 * x0[i]; out[1][1] += w1 * x1[i];
        out[2][0] += w2 * x0[i]; out[2][1] += w2 * x1[i]; out[3][0] += w3 * x0[i]; out[3][1] += w3 * x1[i];
    }
}

/* One row [I] as integers: xq = round(x · 2^s), |xq| <= 2^15. Returns 2^-s (0 for a row of zeros), or -1 if
 * the row holds an infinity or a NaN (the float32 loop keeps those as PyTorch would) or is too small to scale.
 * Vectorised: it runs before every product, on one thread. */
static float to_int16(const float *x, int16_t *xq, int64_t I) {
    __m512 big16 = _mm512_setzero_ps(), poison16 = big16;
    int64_t i = 0;
    for (; i + 16 <= I; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        poison16 = _mm512_add_ps(poison16, _mm512_mul_ps(v, _mm512_setzero_ps()));   /* NaN if inf or NaN */
        big16 = _mm512_max_ps(big16, _mm512_abs_ps(v));
    }
    float big = _mm512_reduce_max_ps(big16), poison = _mm512_reduce_add_ps(poison16);
    for (int64_t j = i; j < I; j++) {
        poison += x[j] * 0.0f;
        big = fmaxf(big, fabsf(x[j]));
    }
    if (poison != 0 || big != big) return -1;
    if (big == 0) {
        memset(xq, 0, (size_t)I * sizeof *xq);
        return 0;
    }
    int e;
    frexpf(big, &e);                                    /* big = f·2^e, f in [0.5, 1): big·2^(15-e) < 2^15 */
    if (15 - e > 127) return -1;                        /* a row under 2^-112: 2^(15-e) is no float32 */
    const float up = ldexpf(1.0f, 15 - e);              /* a power of two: the products are exact */
    const __m512 up16 = _mm512_set1_ps(up);
    for (i = 0; i + 16 <= I; i += 16)                   /* round to nearest even, saturate to int16 */
        _mm256_storeu_si256((__m256i *)(xq + i),
                            _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), up16))));
    for (; i < I; i++) {
        const long v = lrintf(x[i] * up);
        xq[i] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
    }
    return 1.0f / up;
}

/* y = x · wᵀ · scale (+ bias) for float32 rows x holding bfloat16 values; returns -1 (and writes nothing) where
 * the integer form does not apply, and the caller takes the float32 loop. */
static int int8_rows_int16(const float *xf, const int8_t *w, const float *scale, const float *bias,
                           void *y, int y_bf16, int M, int64_t O, int64_t I) {
    if (I > INT16_MAX_INPUTS) return -1;
    int16_t *xq = malloc((size_t)(M * I) * sizeof *xq);
    float factor[MAX_ROWS];
    if (!xq) return -1;
    for (int m = 0; m < M; m++)
        if ((factor[m] = to_int16(xf + m * I, xq + m * I, I)) < 0) {
            free(xq);
            return -1;
        }
    _Pragma("omp parallel for schedule(static)")
    for (int64_t o0 = 0; o0 < O; o0 += BLOCK) {
        const int8_t *u[BLOCK];
        for (int r = 0; r < BLOCK; r++) u[r] = w + (o0 + r < O ? o0 + r : O - 1) * I;   /* tail: repeat */
        for (int m = 0; m < M; m += 2) {
            const int16_t *x0 = xq + m * I, *x1 = m + 1 < M ? x0 + I : x0;
            int32_t out[BLOCK][2];
            dot4x2_int16(u[0], u[1], u[2], u[3], x0, x1, I, out);
            for (int r = 0; r < BLOCK && o0 + r < O; r++)
                for (int k = 0; k < 2 && m + k < M; k++) {
                    float v = (float)out[r][k] * factor[m + k] * scale[o0 + r];
                    if (bias) v += bias[o0 + r];
                    store(y, y_bf16, (m + k) * O + o0 + r, v);
                }
        }
    }
    free(xq);
    return 0;
}
#else
static int int8_rows_int16(const float *xf, const int8_t *w, const float *scale, const float *bias,
                           void *y, int y_bf16, int M, int64_t O, int64_t I) {
    return -1;                                          /* no VNNI: the float32 loop */
}
#endif

/* int8 weights: the integer form for rows holding bfloat16 values where it applies, else the float32 loop. */
static void int8_product(const float *xf, int x_bf16, const int8_t *w, const float *scale, const float *bias,
                         void *y, int y_bf16, int M, int64_t O, int64_t I) {
    if (!x_bf16 || int8_rows_int16(xf, w, scale, bias, y, y_bf16, M, O, I) != 0)
        int8_rows(xf, w, scale, bias, y, y_bf16, M, O, I);
}

/* Entry points (ctypes). x [M, I] and y [M, O] are float32 (flag 0) or bfloat16 (flag 1);
 * scale and bias [O] are float32 or NULL. Returns 0, or -1 when M is out of range. */
int linear_bf16(const void *x, int x_bf16, const uint16_t *w, const float *bias,
                void *y, int y_bf16, int64_t M, int64_t O, int64_t I) {
    float *xf = M < 1 || M > MAX_ROWS ? 0 : malloc((size_t)(M * I) * sizeof(float));   /* x as float32 */
    if (!xf) return -1;
    load_rows(x, x_bf16, xf, M * I);
    bf16_rows(xf, w, 0, bias, y, y_bf16, (int)M, O, I);
    free(xf);
    return 0;
}

int linear_f32(const float *x, const float *w, const float *bias, float *y, int64_t M, int64_t O, int64_t I) {
    if (M < 1 || M > MAX_ROWS) return -1;
    f32_rows(x, w, 0, bias, y, 0, (int)M, O, I);
    return 0;
}

int linear_int8(const void *x, int x_bf16, const int8_t *w, const float *scale, const float *bias,
                void *y, int y_bf16, int64_t M, int64_t O, int64_t I) {
    float *xf = M < 1 || M > MAX_ROWS ? 0 : malloc((size_t)(M * I) * sizeof(float));   /* x as float32 */
    if (!xf) return -1;
    load_rows(x, x_bf16, xf, M * I);
    int8_product(xf, x_bf16, w, scale, bias, y, y_bf16, (int)M, O, I);
    free(xf);
    return 0;
}

/* ---------------------------------------------------------------- one transformer layer, one decoding step
 *
 * A decoding step of musicgen-small runs ~30 PyTorch operations per layer besides its six products: layer
 * norms, the cache writes, two attentions, GELU, residual adds, views. Each costs 10-70 us, most of it
 * because the product before it has just streamed megabytes of weights through the caches. layer_step does
 * a whole pre-norm layer (x + SelfAttn(LN(x)); x + CrossAttn(LN(x), text); x + FFN(LN(x))) for one position
 * in one call, on the products above (float32, bfloat16 or int8 weights). Results are rounded to bfloat16
 * where the layer's tensors are stored. With float32 activations it agrees with PyTorch's layer to about 1e-6
 * (the order of additions in products, norms and attention, gelu below against PyTorch's erf); with bfloat16
 * ones about half the outputs differ by one bfloat16 step, so PyTorch seems to round some intermediate that
 * this keeps in float32 (not traced; tests/fast/test_layer_step.py). */

typedef struct {   /* a weight matrix [O, I]: bfloat16 or float32 (scale NULL), or int8 with a float32 scale per row */
    const void *w;
    const float *scale;
    int64_t O, I;
    int f32;                     /* the weights are float32 (else bfloat16, or int8 where scale is set) */
} Weight;

typedef struct {
    int64_t M, D, H, F;          /* rows (one per batch element), width, heads, feed-forward width */
    int64_t T, max_len;          /* steps already cached; cache slots */
    int64_t L;                   /* text positions (cross-attention keys) */
    int64_t cross_rows;          /* rows 0..cross_rows-1 attend to the text; the others' text is all zeros
                                  * (CFG's null condition), so their cross-attention adds exactly 0 */
    int64_t mem_sb, mem_sh, mem_sl;   /* strides (elements) of the text keys/values over batch, head, position */
    int act_bf16;                /* activations and caches are bfloat16 (else float32) */
    int cross;                   /* the layer has cross-attention */
    float eps;
    const float *norm1_w, *norm1_b, *norm_cross_w, *norm_cross_b, *norm2_w, *norm2_b;   /* float32 [D] */
    Weight in_proj, out_proj, cross_q, cross_out, linear1, linear2;
    void *keys, *values;               /* self-attention cache [M, H, max_len, Dh], written at slot T */
    const void *mem_keys, *mem_values; /* cross-attention keys/values [M, H, L, Dh] (strides above) */
    const uint8_t *mem_mask;           /* [M, L]: 1 where a query may look; NULL: everywhere */
    const void *text_q, *text_out;     /* cross-attention folded into the text ([M, H·L, D] in the activations'
                                        * dtype), or NULL */
} LayerStep;

static inline float act_at(const void *p, int bf16, int64_t i) {
    return bf16 ? bf16_to_float(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline float rounded(float v, int bf16) { return bf16 ? bf16_to_float(float_to_bf16(v)) : v; }

/* y [M, O] = x [M, I] · Wᵀ in float32; where bf16 is set, x holds bfloat16 values (for the int8 integer form). */
static void rows_times(const Weight *W, const float *x, int64_t M, float *y, int bf16) {
    if (W->scale) int8_product(x, bf16, (const int8_t *)W->w, W->scale, 0, y, 0, (int)M, W->O, W->I);
    else if (W->f32) f32_rows(x, (const float *)W->w, 0, 0, y, 0, (int)M, W->O, W->I);
    else bf16_rows(x, (const uint16_t *)W->w, 0, 0, y, 0, (int)M, W->O, W->I);
}

static void product(const Weight *W, const float *x, int64_t M, float *y, int bf16) {
    rows_times(W, x, M, y, bf16);
    if (bf16) for (int64_t i = 0; i < M * W->O; i++) y[i] = rounded(y[i], 1);
}

static void layer_norm(const float *x, const float *w, const float *b, float eps, int64_t M, int64_t D,
                       int bf16, float *out) {
    for (int64_t m = 0; m < M; m++) {
        const float *r = x + m * D;
        float mean = 0, var = 0;
        for (int64_t i = 0; i < D; i++) mean += r[i];
        mean /= D;
        for (int64_t i = 0; i < D; i++) var += (r[i] - mean) * (r[i] - mean);
        const float inv = 1.0f / sqrtf(var / D + eps);
        for (int64_t i = 0; i < D; i++) out[m * D + i] = rounded((r[i] - mean) * inv * w[i] + b[i], bf16);
    }
}

/* q·k over Dh values, k float32 or bfloat16; and acc += p·v */
static inline float dot_key(const float *q, const void *k, int bf16, int64_t n) {
    int64_t i = 0;
    float s = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        const __m512 kv = bf16 ? load16_bf16((const uint16_t *)k + i) : _mm512_loadu_ps((const float *)k + i);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), kv, acc);
    }
    s = _mm512_reduce_add_ps(acc);
#endif
    for (; i < n; i++) s += q[i] * act_at(k, bf16, i);
    return s;
}

static inline void add_value(float p, const void *v, int bf16, float *acc, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    const __m512 pv = _mm512_set1_ps(p);
    for (; i + 16 <= n; i += 16) {
        const __m512 vv = bf16 ? load16_bf16((const uint16_t *)v + i) : _mm512_loadu_ps((const float *)v + i);
        _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(pv, vv, _mm512_loadu_ps(acc + i)));
    }
#endif
    for (; i < n; i++) acc[i] += p * act_at(v, bf16, i);
}

/* Softmax numerators in place: s[t] = exp(s[t]·scale - max), 0 where mask[t] == 0 (mask may be NULL);
 * returns their sum, the denominator. */
static float softmax_numerators(float *s, int64_t n, const uint8_t *mask, float scale) {
    float best = -INFINITY, total = 0;
    for (int64_t t = 0; t < n; t++) {
        s[t] = mask && !mask[t] ? -INFINITY : s[t] * scale;
        if (s[t] > best) best = s[t];
    }
    for (int64_t t = 0; t < n; t++) {
        s[t] = expf(s[t] - best);                        /* a masked key: exp(-inf) = 0 */
        total += s[t];
    }
    return total;
}

/* softmax(q·kᵀ/√Dh)·v for each row and head; q [M, D] (heads contiguous), out [M, D]. Keys and values
 * at K + m·sb + h·sh + t·st, t < n; mask [M, n] or NULL. */
static void attend(const float *q, const void *K, const void *V, int bf16, int64_t sb, int64_t sh, int64_t st,
                   int64_t n, const uint8_t *mask, int64_t M, int64_t H, int64_t Dh, float *out) {
    const size_t size = bf16 ? 2 : 4;
    const float scale = 1.0f / sqrtf((float)Dh);
    _Pragma("omp parallel for schedule(static)")
    for (int64_t task = 0; task < M * H; task++) {
        const int64_t m = task / H, h = task % H;
        const float *qh = q + m * H * Dh + h * Dh;
        const char *k = (const char *)K + (m * sb + h * sh) * size, *v = (const char *)V + (m * sb + h * sh) * size;
        float *scores = malloc((size_t)n * sizeof(float)), *acc = out + m * H * Dh + h * Dh;
        for (int64_t t = 0; t < n; t++) scores[t] = dot_key(qh, k + t * st * size, bf16, Dh);
        const float total = softmax_numerators(scores, n, mask ? mask + m * n : 0, scale);
        for (int64_t d = 0; d < Dh; d++) acc[d] = 0;
        for (int64_t t = 0; t < n; t++)
            if (scores[t] != 0) add_value(scores[t], v + t * st * size, bf16, acc, Dh);
        for (int64_t d = 0; d < Dh; d++) acc[d] = rounded(acc[d] / total, bf16);
        free(scores);
    }
}

/* GELU, 0.5·x·(1 + erf(x/√2)), on n values. libm's erff, one value at a time, took ~1 ms of a musicgen-small
 * step; this takes 16 at a time. erf(a), a = |x/√2| < 4, is one of eight degree-8 polynomials in u = a - centre
 * of its half-unit interval (numpy's Chebyshev fit to erf on 64 nodes per interval, in float32 below), and 1
 * from 4 on (erf(3.92) already rounds to 1 in float32); the sign is x's. Its absolute error is under 1e-7
 * (erf rounded to float32: 3e-8), so GELU is within ~1e-7·|x| of float64 (tests/fast/test_kernels.py). */
static const float ERF_POLY[9][16] = {   /* [power of u][interval]; lanes 8-15 unused */
    {2.76326388e-01f, 7.11155653e-01f, 9.22900140e-01f, 9.86671686e-01f,
     9.98537302e-01f, 9.99899387e-01f, 9.99995708e-01f, 9.99999881e-01f},   /* u^0 */
    {1.06001413e+00f, 6.42931044e-01f, 2.36521125e-01f, 5.27749956e-02f,
     7.14231934e-03f, 5.86277281e-04f, 2.91890119e-05f, 8.81428832e-07f},   /* u^1 */
    {-2.65003532e-01f, -4.82198298e-01f, -2.95651406e-01f, -9.23562422e-02f,
     -1.60702169e-02f, -1.61226257e-03f, -9.48643283e-05f, -3.30536682e-06f},   /* u^2 */
    {-3.09170485e-01f, 2.67883502e-02f, 1.67535886e-01f, 9.01573896e-02f,
     2.17245128e-02f, 2.76038027e-03f, 1.95812623e-04f, 7.97032772e-06f},   /* u^3 */
    {1.26980513e-01f, 1.50687009e-01f, -6.15925435e-03f, -4.81022932e-02f,
     -1.90833863e-02f, -3.25810327e-03f, -2.86569732e-04f, -1.38417417e-05f},   /* u^4 */
    {8.00362676e-02f, -5.32170907e-02f, -4.71865535e-02f, 6.61847321e-03f,
     1.06600598e-02f, 2.75629107e-03f, 3.13628872e-04f, 1.83300690e-05f},   /* u^5 */
    {-4.05171588e-02f, -2.68739760e-02f, 2.12945547e-02f, 8.96674860e-03f,
     -2.90423282e-03f, -1.65779598e-03f, -2.63510767e-04f, -1.92503012e-05f},   /* u^6 */
    {-1.58033706e-02f, 1.78854950e-02f, 3.74511047e-03f, -5.93309943e-03f,
     -7.21527147e-04f, 6.35815319e-04f, 1.73596418e-04f, 1.71446281e-05f},   /* u^7 */
    {9.41090938e-03f, 2.32917489e-03f, -5.57454629e-03f, 6.61970931e-04f,
     9.97340190e-04f, -8.04373776e-05f, -8.19815250e-05f, -1.15370676e-05f},   /* u^8 */
};

void gelu(const float *x, float *y, int64_t n, int bf16) {
    _Pragma("omp parallel for schedule(static)")
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int64_t end = i0 + 256 < n ? i0 + 256 : n;
        int64_t i = i0;
#if defined(__AVX512F__)
        for (; i + 16 <= end; i += 16) {
            const __m512 v = _mm512_loadu_ps(x + i), z = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
            const __m512 a = _mm512_min_ps(_mm512_abs_ps(z), _mm512_set1_ps(3.999f));
            const __m512i j = _mm512_cvttps_epi32(_mm512_add_ps(a, a));                       /* interval 0..7 */
            const __m512 u = _mm512_sub_ps(a, _mm512_fmadd_ps(_mm512_cvtepi32_ps(j), _mm512_set1_ps(0.5f),
                                                              _mm512_set1_ps(0.25f)));
            __m512 p = _mm512_permutexvar_ps(j, _mm512_loadu_ps(ERF_POLY[8]));
            for (int k = 7; k >= 0; k--)                    /* Horner, each lane with its interval's row */
                p = _mm512_fmadd_ps(p, u, _mm512_permutexvar_ps(j, _mm512_loadu_ps(ERF_POLY[k])));
            const __m512 sign = _mm512_and_ps(z, _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u)));
            const __m512 erf = _mm512_or_ps(_mm512_min_ps(p, _mm512_set1_ps(1.0f)), sign);      /* erf(x/√2) */
            const __m512 half_x = _mm512_mul_ps(_mm512_set1_ps(0.5f), v);
            _mm512_storeu_ps(y + i, _mm512_mul_ps(half_x, _mm512_add_ps(_mm512_set1_ps(1.0f), erf)));
        }
#endif
        for (; i < end; i++) {
            const float a = fminf(fabsf(x[i] * 0.70710678118654752f), 3.999f);
            const int j = (int)(a + a);
            const float u = a - ((float)j * 0.5f + 0.25f);
            float p = ERF_POLY[8][j];
            for (int k = 7; k >= 0; k--) p = fmaf(p, u, ERF_POLY[k][j]);
            y[i] = 0.5f * x[i] * (1.0f + copysignf(fminf(p, 1.0f), x[i]));
        }
        if (bf16) for (int64_t k = i0; k < end; k++) y[k] = rounded(y[k], 1);
    }
}

/* Cross-attention with its projections folded into the text. The text's keys k and values v are the same at
 * every step, so for head h (Wq_h: its Dh rows of Wq; Wo_h: its Dh columns of Wo) and text position l
 *     score[h, l] = (Wq_h x)·k_l = x·(Wq_hᵀ k_l) = x·A[h, l]
 *     out = Σ_h Wo_h (Σ_l p[h, l] v_l) = Σ_{h,l} p[h, l] (Wo_h v_l) = Σ_{h,l} p[h, l] B[h, l]
 * with A[h, l] = Wq_hᵀ k_l and B[h, l] = Wo_h v_l, vectors of width D made once per generation
 * (minicraft/layerstep.py) in the activations' dtype. A step then reads 2·H·L·D numbers per row instead of
 * the 2·D·D of Wq and Wo: far fewer for a short prompt. x [rows, D] -> out [rows, D] (before the residual). */
static void folded_cross_attention(const LayerStep *a, const float *x, int64_t rows, float *out) {
    const int64_t D = a->D, H = a->H, L = a->L, J = H * L;
    const int bf16 = a->act_bf16;
    const size_t size = bf16 ? 2 : 4;
    const float scale = 1.0f / sqrtf((float)(D / H));
    float *p = malloc((size_t)J * sizeof(float));
    for (int64_t m = 0; m < rows; m++) {
        const char *B = (const char *)a->text_out + m * J * D * size;
        const Weight A = {(const char *)a->text_q + m * J * D * size, 0, J, D, !bf16};
        rows_times(&A, x + m * D, 1, p, 0);                                /* scores [H, L] = A x */
        for (int64_t h = 0; h < H; h++) {                                   /* softmax over each head's L */
            float *ph = p + h * L;
            const float total = softmax_numerators(ph, L, a->mem_mask ? a->mem_mask + m * L : 0, scale);
            for (int64_t l = 0; l < L; l++) ph[l] /= total;
        }
        _Pragma("omp parallel for schedule(static)")                        /* out = Σ_j p_j B[j], by columns */
        for (int64_t d0 = 0; d0 < D; d0 += 64) {
            const int64_t n = d0 + 64 < D ? 64 : D - d0;
            float acc[64] = {0};
            for (int64_t j = 0; j < J; j++)
                if (p[j] != 0) add_value(p[j], B + (j * D + d0) * size, bf16, acc, n);
            for (int64_t i = 0; i < n; i++) out[m * D + d0 + i] = rounded(acc[i], bf16);
        }
    }
    free(p);
}

/* x [M, D] -> y [M, D], both in the activations' dtype. Returns 0, or -1 for shapes it does not take. */
int layer_step(const LayerStep *a, const void *x, void *y) {
    const int64_t M = a->M, D = a->D, H = a->H, F = a->F, Dh = D / a->H, T = a->T;
    const int bf16 = a->act_bf16;
    if (M < 1 || M > MAX_ROWS || D % H || T >= a->max_len || (a->cross && (a->cross_rows < 0 || a->cross_rows > M)))
        return -1;
    float *work = malloc((size_t)M * (6 * D + F) * sizeof(float));
    if (!work) return -1;
    float *res = work, *h = res + M * D, *qkv = h + M * D, *att = qkv + 3 * M * D, *ff = att + M * D;
    load_rows(x, bf16, res, M * D);

    /* self-attention: project, write this step's keys and values at slot T, attend to slots 0..T */
    layer_norm(res, a->norm1_w, a->norm1_b, a->eps, M, D, bf16, h);
    product(&a->in_proj, h, M, qkv, bf16);                                  /* [M, 3D]: q, k, v */
    float *q = h;                                                           /* h is free again: q [M, D] */
    for (int64_t m = 0; m < M; m++)
        for (int64_t hd = 0; hd < H; hd++) {
            const int64_t slot = ((m * H + hd) * a->max_len + T) * Dh;
            for (int64_t d = 0; d < Dh; d++) {
                const float *row = qkv + m * 3 * D + hd * Dh + d;
                q[m * D + hd * Dh + d] = row[0];
                store(a->keys, bf16, slot + d, row[D]);
                store(a->values, bf16, slot + d, row[2 * D]);
            }
        }
    attend(q, a->keys, a->values, bf16, H * a->max_len * Dh, a->max_len * Dh, Dh, T + 1, 0, M, H, Dh, att);
    product(&a->out_proj, att, M, h, bf16);
    for (int64_t i = 0; i < M * D; i++) res[i] = rounded(res[i] + h[i], bf16);

    /* cross-attention to the text, whose keys and values an earlier step projected */
    if (a->cross && a->cross_rows > 0) {
        const int64_t C = a->cross_rows;                                   /* rows C..M-1 add 0 */
        layer_norm(res, a->norm_cross_w, a->norm_cross_b, a->eps, C, D, bf16, h);
        if (a->text_q) {
            folded_cross_attention(a, h, C, att);
            memcpy(h, att, (size_t)(C * D) * sizeof(float));
        } else {
            product(&a->cross_q, h, C, qkv, bf16);
            attend(qkv, a->mem_keys, a->mem_values, bf16, a->mem_sb, a->mem_sh, a->mem_sl, a->L, a->mem_mask,
                   C, H, Dh, att);
            product(&a->cross_out, att, C, h, bf16);
        }
        for (int64_t i = 0; i < C * D; i++) res[i] = rounded(res[i] + h[i], bf16);
    }

    /* feed-forward: linear2(gelu(linear1(LN(x)))) */
    layer_norm(res, a->norm2_w, a->norm2_b, a->eps, M, D, bf16, h);
    product(&a->linear1, h, M, ff, bf16);
    gelu(ff, ff, M * F, bf16);
    product(&a->linear2, ff, M, h, bf16);
    for (int64_t i = 0; i < M * D; i++) store(y, bf16, i, res[i] + h[i]);
    free(work);
    return 0;
}

/* Matrix-vector products for one decoding step: y[m, o] = sum_i x[m, i] * w[o, i].
 *
 * A decoding step multiplies one or two rows of activations (two with
 * classifier-free guidance) by every weight of the LM. Each weight is used
 * once or twice, so the step is bound by how fast the weights can be read
 * from memory, not by arithmetic. PyTorch's CPU kernels read bfloat16 and
 * int8 weights at about half the rate they read float32 ones (measured in
 * benchmarks/README.md); these loops read them 1.5-3x faster than those. They
 * are plain C with AVX-512 intrinsics where the CPU has them and a portable
 * loop elsewhere (minicraft/matvec.py compiles this file with -O3
 * -march=native), and OpenMP splits the output rows across PyTorch's threads.
 *
 * Not handled: more than MAX_ROWS activation rows (prefill uses PyTorch's
 * GEMM), transposed or strided layouts (callers pass contiguous tensors).
 */
#include <stdint.h>
#include <string.h>

#define MAX_ROWS 4
#define BLOCK 4          /* output rows per task: the dot4x2 functions below take four */

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

/* Entry points (ctypes). x [M, I] and y [M, O] are float32 (flag 0) or bfloat16 (flag 1);
 * scale and bias [O] are float32 or NULL. Returns 0, or -1 when M is out of range. */
int linear_bf16(const void *x, int x_bf16, const uint16_t *w, const float *bias,
                void *y, int y_bf16, int64_t M, int64_t O, int64_t I) {
    if (M < 1 || M > MAX_ROWS) return -1;
    float xf[M * I];                       /* the activations as float32, on the stack */
    load_rows(x, x_bf16, xf, M * I);
    bf16_rows(xf, w, 0, bias, y, y_bf16, (int)M, O, I);
    return 0;
}

int linear_int8(const void *x, int x_bf16, const int8_t *w, const float *scale, const float *bias,
                void *y, int y_bf16, int64_t M, int64_t O, int64_t I) {
    if (M < 1 || M > MAX_ROWS) return -1;
    float xf[M * I];                       /* the activations as float32, on the stack */
    load_rows(x, x_bf16, xf, M * I);
    int8_rows(xf, w, scale, bias, y, y_bf16, (int)M, O, I);
    return 0;
}

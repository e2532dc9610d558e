/* Matrix-vector products for one decoding step: y[m, o] = sum_i x[m, i] * w[o, i].
 *
 * A decoding step multiplies one or two rows of activations (two with
 * classifier-free guidance) by every weight of the LM. Each weight is used
 * once or twice, so the step is bound by how fast the weights can be read
 * from memory, not by arithmetic; these loops aim at that floor (docs/speed.md
 * measures how close they come on each instruction set).
 *
 * One loop serves every CPU. It is written on a dozen vector operations (vload, vfma, vsum, ...: the next
 * section), defined three times: AVX-512 (16 floats a vector), AVX2 with FMA (8) and ARM64 NEON (4). A
 * CPU with none of them runs the scalar loops that finish every vector loop's tail. kernels.py compiles
 * this file on the user's machine for the CPU it reports (-march=native), so which definitions apply is
 * decided there, never by the machine the package was built on. OpenMP splits the output rows across
 * PyTorch's threads; a compiler without OpenMP (Apple's clang) builds the same loops for one thread.
 *
 * Not handled: more than MAX_ROWS activation rows (prefill uses PyTorch's GEMM), transposed or strided
 * layouts (callers pass contiguous tensors).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* ---------------------------------------------------------------- the vector operations, per instruction set
 *
 * vec holds LANES float32 values.  vload(p): LANES floats;  vload_bf16(p), vload_int8(p): LANES bfloat16 or
 * int8 values, as float32;  vfma(acc, a, b) = acc + a·b;  vsum(v): the lanes' sum;  vhmax(v): the largest
 * lane;  vabs, vmin, vmax, vadd, vsub, vmul lane by lane;  vcopysign(m, s): |m| with the sign of s;
 * vpick(table, j): lane k gets table[j_k] (j from vinterval(a) = trunc(2a), 0..7; for GELU's erf below).
 * PREFETCH(p): ask for the cache line holding p, to be read soon. */
#if defined(__AVX512F__)
#include <immintrin.h>
#define ISA "AVX-512"
#define LANES 16
typedef __m512 vec;
typedef __m512i vidx;
static inline vec vzero(void) { return _mm512_setzero_ps(); }
static inline vec vset(float v) { return _mm512_set1_ps(v); }
static inline vec vload(const float *p) { return _mm512_loadu_ps(p); }
static inline void vstore(float *p, vec v) { _mm512_storeu_ps(p, v); }
static inline vec vload_bf16(const uint16_t *p) {           /* 16-bit lanes widened, shifted to the top half */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline vec vload_int8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
static inline vec vfma(vec acc, vec a, vec b) { return _mm512_fmadd_ps(a, b, acc); }
static inline vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
static inline vec vsub(vec a, vec b) { return _mm512_sub_ps(a, b); }
static inline vec vmul(vec a, vec b) { return _mm512_mul_ps(a, b); }
static inline vec vmin(vec a, vec b) { return _mm512_min_ps(a, b); }
static inline vec vmax(vec a, vec b) { return _mm512_max_ps(a, b); }
static inline vec vabs(vec a) { return _mm512_abs_ps(a); }
static inline vec vcopysign(vec m, vec s) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castps_si512(m)),
                                               _mm512_and_si512(sign, _mm512_castps_si512(s))));
}
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
static inline float vhmax(vec v) { return _mm512_reduce_max_ps(v); }
static inline vidx vinterval(vec a) { return _mm512_cvttps_epi32(_mm512_add_ps(a, a)); }
static inline vec vinterval_float(vidx j) { return _mm512_cvtepi32_ps(j); }
static inline vec vpick(const float *table, vidx j) { return _mm512_permutexvar_ps(j, _mm512_loadu_ps(table)); }
#define PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ISA "AVX2+FMA"
#define LANES 8
typedef __m256 vec;
typedef __m256i vidx;
static inline vec vzero(void) { return _mm256_setzero_ps(); }
static inline vec vset(float v) { return _mm256_set1_ps(v); }
static inline vec vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, vec v) { _mm256_storeu_ps(p, v); }
static inline vec vload_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline vec vload_int8(const int8_t *p) {                 /* 8 bytes: _mm_loadl_epi64 reads no further */
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline vec vfma(vec acc, vec a, vec b) { return _mm256_fmadd_ps(a, b, acc); }
static inline vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
static inline vec vsub(vec a, vec b) { return _mm256_sub_ps(a, b); }
static inline vec vmul(vec a, vec b) { return _mm256_mul_ps(a, b); }
static inline vec vmin(vec a, vec b) { return _mm256_min_ps(a, b); }
static inline vec vmax(vec a, vec b) { return _mm256_max_ps(a, b); }
static inline vec vabs(vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline vec vcopysign(vec m, vec s) {
    const vec sign = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign, m), _mm256_and_ps(sign, s));
}
static inline float vsum(vec v) {                               /* 8 -> 4 -> 2 -> 1 */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline float vhmax(vec v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline vidx vinterval(vec a) { return _mm256_cvttps_epi32(_mm256_add_ps(a, a)); }
static inline vec vinterval_float(vidx j) { return _mm256_cvtepi32_ps(j); }
static inline vec vpick(const float *table, vidx j) { return _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), j); }
#define PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define ISA "NEON"
#define LANES 4
typedef float32x4_t vec;
typedef uint32x4_t vidx;
static inline vec vzero(void) { return vdupq_n_f32(0); }
static inline vec vset(float v) { return vdupq_n_f32(v); }
static inline vec vload(const float *p) { return vld1q_f32(p); }
static inline void vstore(float *p, vec v) { vst1q_f32(p, v); }
static inline vec vload_bf16(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
static inline vec vload_int8(const int8_t *p) {                 /* 4 bytes, widened 8 -> 16 -> 32 bits */
    int32_t four;
    memcpy(&four, p, sizeof four);
    const int8x8_t b = vreinterpret_s8_s32(vdup_n_s32(four));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(b))));
}
static inline vec vfma(vec acc, vec a, vec b) { return vfmaq_f32(acc, a, b); }
static inline vec vadd(vec a, vec b) { return vaddq_f32(a, b); }
static inline vec vsub(vec a, vec b) { return vsubq_f32(a, b); }
static inline vec vmul(vec a, vec b) { return vmulq_f32(a, b); }
static inline vec vmin(vec a, vec b) { return vminq_f32(a, b); }
static inline vec vmax(vec a, vec b) { return vmaxq_f32(a, b); }
static inline vec vabs(vec a) { return vabsq_f32(a); }
static inline vec vcopysign(vec m, vec s) { return vbslq_f32(vdupq_n_u32(0x80000000u), s, m); }
static inline float vsum(vec v) { return vaddvq_f32(v); }
static inline float vhmax(vec v) { return vmaxvq_f32(v); }
static inline vidx vinterval(vec a) { return vcvtq_u32_f32(vaddq_f32(a, a)); }
static inline vec vinterval_float(vidx j) { return vcvtq_f32_u32(j); }
static inline vec vpick(const float *table, vidx j) {          /* a byte table lookup: lane k takes bytes 4j..4j+3 */
    const uint8x16x2_t bytes = {{vld1q_u8((const uint8_t *)table), vld1q_u8((const uint8_t *)(table + 4))}};
    const uint8x16_t index = vreinterpretq_u8_u32(vmlaq_n_u32(vdupq_n_u32(0x03020100u), j, 0x04040404u));
    return vreinterpretq_f32_u8(vqtbl2q_u8(bytes, index));
}
#define PREFETCH(p) __builtin_prefetch((p), 0, 3)

#else
#define ISA "scalar"                  /* no vector definitions: every loop below runs its scalar part */
#endif

/* dot4x2: four weight rows u0..u3 against two activation rows x0, x1 (x1 may equal x0), length I:
 * out[r][m] = sum_i u_r[i] * x_m[i]. Each weight loaded serves both rows while it is in a register. */
#if defined(LANES)
#define FMA4X2(VLOAD, OFFSET)                                                                                  \
    {   const vec a = vload(x0 + i + (OFFSET)), b = vload(x1 + i + (OFFSET));                                   \
        vec w = VLOAD(u0 + i + (OFFSET)); s00 = vfma(s00, w, a); s01 = vfma(s01, w, b);                         \
        w = VLOAD(u1 + i + (OFFSET));     s10 = vfma(s10, w, a); s11 = vfma(s11, w, b);                         \
        w = VLOAD(u2 + i + (OFFSET));     s20 = vfma(s20, w, a); s21 = vfma(s21, w, b);                         \
        w = VLOAD(u3 + i + (OFFSET));     s30 = vfma(s30, w, a); s31 = vfma(s31, w, b); }
/* LINE weights fill a 64-byte cache line. While a line of each of the four rows is multiplied, the same
 * line of the next four rows is fetched (software prefetch): rows of 1-4 KB are too short for the
 * hardware prefetcher to get going, and without this the loop waits on memory half the time. */
#define DOT4X2_VECTOR(WTYPE, VLOAD)                                                                        \
    const int64_t line = 64 / (int64_t)sizeof(WTYPE);                                                      \
    vec s00 = vzero(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;        \
    for (; i + line <= I; i += line) {                                                                     \
        PREFETCH(u0 + i + 4 * I); PREFETCH(u1 + i + 4 * I); PREFETCH(u2 + i + 4 * I); PREFETCH(u3 + i + 4 * I); \
        for (int k = 0; k < line; k += LANES) FMA4X2(VLOAD, k)                                             \
    }                                                                                                      \
    for (; i + LANES <= I; i += LANES) FMA4X2(VLOAD, 0)                                                    \
    out[0][0] = vsum(s00); out[0][1] = vsum(s01); out[1][0] = vsum(s10); out[1][1] = vsum(s11);            \
    out[2][0] = vsum(s20); out[2][1] = vsum(s21); out[3][0] = vsum(s30); out[3][1] = vsum(s31);
#else
#define DOT4X2_VECTOR(WTYPE, VLOAD)
#endif

#define DOT4X2(NAME, WTYPE, SCALAR, VLOAD)                                                                 \
static inline void NAME(const WTYPE *u0, const WTYPE *u1, const WTYPE *u2, const WTYPE *u3,               \
                        const float *x0, const float *x1, int64_t I, float out[4][2]) {                    \
    int64_t i = 0;                                                                                         \
    for (int r = 0; r < 4; r++) out[r][0] = out[r][1] = 0;                                                 \
    DOT4X2_VECTOR(WTYPE, VLOAD)                                                                            \
    for (; i < I; i++) {                                                                                   \
        const float w0 = SCALAR(u0[i]), w1 = SCALAR(u1[i]), w2 = SCALAR(u2[i]), w3 = SCALAR(u3[i]);        \
        out[0][0] += w0 * x0[i]; out[0][1] += w0 * x1[i]; out[1][0] += w1 * x0[i]; out[1][1] += w1 * x1[i];\
        out[2][0] += w2 * x0[i]; out[2][1] += w2 * x1[i]; out[3][0] += w3 * x0[i]; out[3][1] += w3 * x1[i];\
    }                                                                                                      \
}
#define AS_FLOAT(v) ((float)(v))
DOT4X2(dot4x2_bf16, uint16_t, bf16_to_float, vload_bf16)
DOT4X2(dot4x2_int8, int8_t, AS_FLOAT, vload_int8)
DOT4X2(dot4x2_f32, float, AS_FLOAT, vload)

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

/* ---------------------------------------------------------------- int8 weights, bfloat16 rows: in integers
 *
 * In float32 each int8 weight costs a widening, a conversion and one multiply-add per activation row; with
 * both cores streaming weights, that arithmetic, not memory, can set the pace. In integers, one instruction
 * multiplies pairs of 16-bit values and adds each pair into a 32-bit sum, after a single widening of the
 * weights: vpdpwssd (AVX-512 VNNI, and AVX-VNNI on newer AVX2 CPUs), vpmaddwd + vpaddd (AVX2), smlal (NEON).
 * So each activation row is scaled by a power of two to 16-bit integers (|xq| <= 2^15): a bfloat16 value has
 * 8 significant bits, so every value at least 1/128 of the row's largest stays exact, and the others are
 * rounded by at most max|x|·2^-15. The sums are exact: each 32-bit lane adds at most 512 products
 * (< 127·2^15·512 < 2^31) before it is added into a 64-bit total (CHUNK below). float32 activations never
 * come here: they would lose more than float32 rounding does.
 *
 * i16: a vector of 16-bit integers; i32: of 32-bit sums.  load_int8_as_int16(p), load_int16(p): PAIRS·2
 * values;  dot_pairs(acc, w, x): acc + the products w·x summed in adjacent pairs;  sum64(acc): the total. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define INT16_FORM "vpdpwssd (AVX-512 VNNI)"
#define INT16_LANES 32
typedef __m512i i16;
typedef __m512i i32;
static inline i32 zero32(void) { return _mm512_setzero_si512(); }
static inline i16 load_int8_as_int16(const int8_t *p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p)); }
static inline i16 load_int16(const int16_t *p) { return _mm512_loadu_si512(p); }
static inline i32 dot_pairs(i32 acc, i16 w, i16 x) { return _mm512_dpwssd_epi32(acc, w, x); }
#elif defined(__AVX2__) && defined(__FMA__)               /* as the vector operations above: to_int16 uses them */
#define INT16_LANES 16
typedef __m256i i16;
typedef __m256i i32;
static inline i32 zero32(void) { return _mm256_setzero_si256(); }
static inline i16 load_int8_as_int16(const int8_t *p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)); }
static inline i16 load_int16(const int16_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
#if defined(__AVXVNNI__)
#define INT16_FORM "vpdpwssd (AVX-VNNI)"
static inline i32 dot_pairs(i32 acc, i16 w, i16 x) { return _mm256_dpwssd_avx_epi32(acc, w, x); }
#else
#define INT16_FORM "vpmaddwd (AVX2)"
static inline i32 dot_pairs(i32 acc, i16 w, i16 x) { return _mm256_add_epi32(acc, _mm256_madd_epi16(w, x)); }
#endif
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define INT16_FORM "smlal (NEON)"
#define INT16_LANES 8
typedef int16x8_t i16;
typedef int32x4_t i32;
static inline i32 zero32(void) { return vdupq_n_s32(0); }
static inline i16 load_int8_as_int16(const int8_t *p) { return vmovl_s8(vld1_s8(p)); }
static inline i16 load_int16(const int16_t *p) { return vld1q_s16(p); }
static inline i32 dot_pairs(i32 acc, i16 w, i16 x) {
    return vmlal_high_s16(vmlal_s16(acc, vget_low_s16(w), vget_low_s16(x)), w, x);
}
#endif

#if defined(INT16_LANES)
#define CHUNK 2048          /* inputs per 32-bit sum: each lane adds at most 512 products (4 lanes on NEON) */
static inline int64_t sum64(i32 acc) {
    int32_t lanes[sizeof(i32) / sizeof(int32_t)];
    int64_t total = 0;
    memcpy(lanes, &acc, sizeof lanes);
    for (size_t k = 0; k < sizeof lanes / sizeof *lanes; k++) total += lanes[k];
    return total;
}

static inline void dot4x2_int16(const int8_t *u0, const int8_t *u1, const int8_t *u2, const int8_t *u3,
                                const int16_t *x0, const int16_t *x1, int64_t I, int64_t out[4][2]) {
    for (int r = 0; r < 4; r++) out[r][0] = out[r][1] = 0;
    int64_t i = 0;
#define PAIRS(U, S0, S1) { const i16 w = load_int8_as_int16((U) + i + k); S0 = dot_pairs(S0, w, a); S1 = dot_pairs(S1, w, b); }
    while (i + INT16_LANES <= I) {
        const int64_t end = i + CHUNK < I ? i + CHUNK : I;
        i32 s00 = zero32(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        for (; i + 64 <= end; i += 64) {                /* a cache line of each row; prefetch as in dot4x2 */
            PREFETCH(u0 + i + 4 * I); PREFETCH(u1 + i + 4 * I); PREFETCH(u2 + i + 4 * I); PREFETCH(u3 + i + 4 * I);
            for (int k = 0; k < 64; k += INT16_LANES) {
                const i16 a = load_int16(x0 + i + k), b = load_int16(x1 + i + k);
                PAIRS(u0, s00, s01) PAIRS(u1, s10, s11) PAIRS(u2, s20, s21) PAIRS(u3, s30, s31)
            }
        }
        for (; i + INT16_LANES <= end; i += INT16_LANES) {    /* the last vectors, less than a line */
            const int k = 0;                                  /* PAIRS reads at i + k */
            const i16 a = load_int16(x0 + i), b = load_int16(x1 + i);
            PAIRS(u0, s00, s01) PAIRS(u1, s10, s11) PAIRS(u2, s20, s21) PAIRS(u3, s30, s31)
        }
        out[0][0] += sum64(s00); out[0][1] += sum64(s01); out[1][0] += sum64(s10); out[1][1] += sum64(s11);
        out[2][0] += sum64(s20); out[2][1] += sum64(s21); out[3][0] += sum64(s30); out[3][1] += sum64(s31);
    }
#undef PAIRS
    for (; i < I; i++) {
        const int32_t w0 = u0[i], w1 = u1[i], w2 = u2[i], w3 = u3[i];
        out[0][0] += w0 * x0[i]; out[0][1] += w0 * x1[i]; out[1][0] += w1 * x0[i]; out[1][1] += w1 * x1[i];
        out[2][0] += w2 * x0[i]; out[2][1] += w2 * x1[i]; out[3][0] += w3 * x0[i]; out[3][1] += w3 * x1[i];
    }
}

/* One row [I] as integers: xq = round(x · 2^s), |xq| <= 2^15. Returns 2^-s (0 for a row of zeros), or -1 if
 * the row holds an infinity or a NaN (the float32 loop keeps those as PyTorch would) or is too small to scale.
 * It runs before every product, on one thread, so its loops are vectors too. */
static float to_int16(const float *x, int16_t *xq, int64_t I) {
    float big = 0, poison = 0;
    int64_t i = 0;
    vec big_v = vzero(), poison_v = vzero();
    for (; i + LANES <= I; i += LANES) {
        const vec v = vload(x + i);
        poison_v = vfma(poison_v, v, vzero());            /* NaN if inf or NaN */
        big_v = vmax(big_v, vabs(v));
    }
    big = vhmax(big_v);
    poison = vsum(poison_v);
    for (; i < I; i++) {
        poison += x[i] * 0.0f;
        big = fmaxf(big, fabsf(x[i]));
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
    i = 0;
#if defined(__AVX512F__)                                /* round to nearest even, saturate to int16 */
    for (; i + 16 <= I; i += 16)
        _mm256_storeu_si256((__m256i *)(xq + i),
                            _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vset(up)))));
#elif defined(__AVX2__)
    for (; i + 16 <= I; i += 16) {                      /* packs interleaves 128-bit halves: permute them back */
        const __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vset(up)));
        const __m256i hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vset(up)));
        _mm256_storeu_si256((__m256i *)(xq + i), _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8));
    }
#elif defined(__aarch64__)
    for (; i + 8 <= I; i += 8) {
        const int32x4_t lo = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i), up));
        const int32x4_t hi = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4), up));
        vst1q_s16(xq + i, vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)));
    }
#endif
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
            int64_t out[BLOCK][2];
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
#define INT16_FORM "none (the float32 loop)"
static int int8_rows_int16(const float *xf, const int8_t *w, const float *scale, const float *bias,
                           void *y, int y_bf16, int M, int64_t O, int64_t I) {
    return -1;                                          /* no integer vectors: the float32 loop */
}
#endif

/* int8 weights: the integer form for rows holding bfloat16 values where it applies, else the float32 loop. */
static void int8_product(const float *xf, int x_bf16, const int8_t *w, const float *scale, const float *bias,
                         void *y, int y_bf16, int M, int64_t O, int64_t I) {
    if (!x_bf16 || int8_rows_int16(xf, w, scale, bias, y, y_bf16, M, O, I) != 0)
        int8_rows(xf, w, scale, bias, y, y_bf16, M, O, I);
}

/* What this build is: its vector instructions, the integer form, and how many threads its loops use. */
const char *kernel_isa(void) { return ISA ", int8 x bfloat16: " INT16_FORM; }

int kernel_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
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
#if defined(LANES)
    vec acc = vzero();
    for (; i + LANES <= n; i += LANES)
        acc = vfma(acc, vload(q + i), bf16 ? vload_bf16((const uint16_t *)k + i) : vload((const float *)k + i));
    s = vsum(acc);
#endif
    for (; i < n; i++) s += q[i] * act_at(k, bf16, i);
    return s;
}

static inline void add_value(float p, const void *v, int bf16, float *acc, int64_t n) {
    int64_t i = 0;
#if defined(LANES)
    const vec pv = vset(p);
    for (; i + LANES <= n; i += LANES)
        vstore(acc + i, vfma(vload(acc + i), pv, bf16 ? vload_bf16((const uint16_t *)v + i) : vload((const float *)v + i)));
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
#if defined(LANES)
        for (; i + LANES <= end; i += LANES) {                  /* the scalar loop below, LANES at a time */
            const vec v = vload(x + i), z = vmul(v, vset(0.70710678118654752f));
            const vec a = vmin(vabs(z), vset(3.999f));
            const vidx j = vinterval(a);                                                       /* interval 0..7 */
            const vec u = vsub(a, vfma(vset(0.25f), vinterval_float(j), vset(0.5f)));
            vec p = vpick(ERF_POLY[8], j);
            for (int k = 7; k >= 0; k--) p = vfma(vpick(ERF_POLY[k], j), p, u);   /* Horner, each lane its row */
            const vec erf = vcopysign(vmin(p, vset(1.0f)), z);                                  /* erf(x/√2) */
            vstore(y + i, vmul(vmul(vset(0.5f), v), vadd(vset(1.0f), erf)));
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

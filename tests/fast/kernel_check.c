/* kernels.c checked without Python: for CPUs this machine can only emulate (ARM64, under qemu-user) and for
 * every x86 target it runs (tests/fast/test_kernel_targets.py builds and runs this file for each).
 *
 * Each product and GELU is compared with double arithmetic and a stated bound: one line per check,
 * "check <name> <largest error> <bound>". layer_step has no reference here; its outputs are printed
 * ("layer_step <name> <values>") so that the test compares every build with the native one, which
 * tests/fast/test_layer_step.py checks against PyTorch's layer. Build: cc -O2 -I minicraft/fast
 * tests/fast/kernel_check.c -lm (any -march, with or without -fopenmp). */
#include "kernels.c"

#include <stdio.h>

static uint64_t state = 88172645463325252ull;
static float uniform(void) {                                   /* xorshift64: the same numbers on every CPU */
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (float)((double)(state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float bf16_round(float v) { return bf16_to_float(float_to_bf16(v)); }
static void check(const char *name, double error, double bound) {
    printf("check %s %.6g %.6g\n", name, error, bound);
}

/* y = x·wᵀ(·scale) in double, and the rounding bound of a float32 sum of those products: I·2^-24·Σ|x·w|. */
static void exact(const float *x, const float *w, const float *scale, int64_t M, int64_t O, int64_t I,
                  double *y, double *bound) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < O; o++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < I; i++) {
                s += (double)x[m * I + i] * w[o * I + i];
                a += fabs((double)x[m * I + i] * w[o * I + i]);
            }
            const double c = scale ? scale[o] : 1.0;
            y[m * O + o] = s * c;
            bound[m * O + o] = ((double)I * ldexp(1, -24) * a + 1e-30) * c;
        }
}

static void products(int64_t M, int64_t O, int64_t I) {
    float *x = malloc(M * I * 4), *w = malloc(O * I * 4), *scale = malloc(O * 4), *y = malloc(M * O * 4);
    double *ref = malloc(M * O * 8), *bound = malloc(M * O * 8);
    uint16_t *wb = malloc(O * I * 2), *xb = malloc(M * I * 2), *yb = malloc(M * O * 2);
    int8_t *wq = malloc(O * I);
    char name[64];
    for (int64_t i = 0; i < M * I; i++) x[i] = uniform();
    for (int64_t i = 0; i < O * I; i++) w[i] = uniform() * 0.1f;

    linear_f32(x, w, 0, y, M, O, I);                                          /* float32 weights */
    exact(x, w, 0, M, O, I, ref, bound);
    double worst = 0, ratio = 0;
    for (int64_t k = 0; k < M * O; k++) ratio = fmax(ratio, fabs(y[k] - ref[k]) / bound[k]);
    snprintf(name, sizeof name, "f32-%ldx%ldx%ld", (long)M, (long)O, (long)I);
    check(name, ratio, 1);

    for (int64_t i = 0; i < O * I; i++) { wb[i] = float_to_bf16(w[i]); w[i] = bf16_to_float(wb[i]); }
    exact(x, w, 0, M, O, I, ref, bound);
    linear_bf16(x, 0, wb, 0, y, 0, M, O, I);                                  /* bfloat16 weights */
    for (int64_t k = 0; k < M * O; k++) worst = fmax(worst, fabs(y[k] - ref[k]) / bound[k]);
    snprintf(name, sizeof name, "bf16-%ldx%ldx%ld", (long)M, (long)O, (long)I);
    check(name, worst, 1);

    for (int64_t o = 0; o < O; o++) {                                         /* int8 weights, a scale per row */
        float big = 0;
        for (int64_t i = 0; i < I; i++) big = fmaxf(big, fabsf(w[o * I + i]));
        scale[o] = big / 127;
        for (int64_t i = 0; i < I; i++) {
            wq[o * I + i] = (int8_t)lrintf(w[o * I + i] / scale[o]);
            w[o * I + i] = wq[o * I + i];
        }
    }
    exact(x, w, scale, M, O, I, ref, bound);
    linear_int8(x, 0, wq, scale, 0, y, 0, M, O, I);
    worst = 0;
    for (int64_t k = 0; k < M * O; k++) worst = fmax(worst, fabs(y[k] - ref[k]) / bound[k]);
    snprintf(name, sizeof name, "int8-f32rows-%ldx%ldx%ld", (long)M, (long)O, (long)I);
    check(name, worst, 1);

    /* bfloat16 rows: the integer form rounds each x to max|x|·2^-15 at worst, then the output to bfloat16 */
    for (int64_t i = 0; i < M * I; i++) { xb[i] = float_to_bf16(x[i]); x[i] = bf16_to_float(xb[i]); }
    exact(x, w, scale, M, O, I, ref, bound);
    linear_int8(xb, 1, wq, scale, 0, yb, 1, M, O, I);
    worst = 0;
    for (int64_t m = 0; m < M; m++) {
        double big = 0;
        for (int64_t i = 0; i < I; i++) big = fmax(big, fabs(x[m * I + i]));
        for (int64_t o = 0; o < O; o++) {
            double weights = 0;
            for (int64_t i = 0; i < I; i++) weights += fabs(w[o * I + i]);
            const int64_t k = m * O + o;
            const double b = bound[k] + weights * scale[o] * big * ldexp(1, -15) + fabs(ref[k]) * ldexp(1, -8);
            worst = fmax(worst, fabs(bf16_to_float(yb[k]) - ref[k]) / (b * 1.01));
        }
    }
    snprintf(name, sizeof name, "int8-bf16rows-%ldx%ldx%ld", (long)M, (long)O, (long)I);
    check(name, worst, 1);
    free(x); free(w); free(scale); free(y); free(ref); free(bound); free(wb); free(xb); free(yb); free(wq);
}

static void gelu_check(void) {                  /* within 2e-7·|x| of 0.5·x·(1 + erf(x/√2)) in double */
    enum { N = 4099 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = uniform() * 9.0f;
    x[0] = 0; x[1] = -0.0f; x[2] = 40; x[3] = -40;
    gelu(x, y, N, 0);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double e = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
        worst = fmax(worst, fabs(y[i] - e) / (2e-7 * fabs(x[i]) + 1e-30));
    }
    check("gelu", worst, 1);
}

/* One layer step (D 64, 4 heads, F 128, 2 rows, 5 cached positions, 3 text positions) for each kind of
 * weights and activations; its outputs are printed. */
static void layer_check(int act_bf16, int kind) {            /* kind: 0 float32, 1 bfloat16, 2 int8 weights */
    enum { M = 2, D = 64, H = 4, F = 128, T = 5, S = 8, L = 3 };
    const int64_t shapes[6][2] = {{3 * D, D}, {D, D}, {D, D}, {D, D}, {F, D}, {D, F}};
    static float wf[6][F * D], scales[6][F], norms[6][D], keys[M * H * S * (D / H) * 2], values[sizeof keys / 4];
    static float mem_k[M * H * L * (D / H)], mem_v[sizeof mem_k / 4], xf[M * D], yf[M * D];
    static uint16_t wb[6][F * D], kb[sizeof keys / 4], vb[sizeof keys / 4], mkb[sizeof mem_k / 4],
                    mvb[sizeof mem_k / 4], xb[M * D], yb[M * D];
    static int8_t wq[6][F * D];
    state = 12345;
    LayerStep a = {M, D, H, F, T, S, L, 1, H * L * (D / H), L * (D / H), D / H, act_bf16, 1, 1e-5f};
    Weight *weights[6] = {&a.in_proj, &a.out_proj, &a.cross_q, &a.cross_out, &a.linear1, &a.linear2};
    for (int k = 0; k < 6; k++) {
        const int64_t O = shapes[k][0], I = shapes[k][1];
        for (int64_t i = 0; i < O * I; i++) {
            wf[k][i] = uniform() / sqrtf((float)I);
            wb[k][i] = float_to_bf16(wf[k][i]);
        }
        for (int64_t o = 0; o < O; o++) {
            scales[k][o] = 1.0f / (127 * sqrtf((float)I));
            for (int64_t i = 0; i < I; i++) wq[k][o * I + i] = (int8_t)lrintf(wf[k][o * I + i] / scales[k][o]);
        }
        *weights[k] = (Weight){kind == 0 ? (void *)wf[k] : kind == 1 ? (void *)wb[k] : (void *)wq[k],
                               kind == 2 ? scales[k] : 0, O, I, kind == 0};
    }
    for (int k = 0; k < 6; k++)
        for (int i = 0; i < D; i++) norms[k][i] = k % 2 ? 0.1f * uniform() : 1 + 0.1f * uniform();
    a.norm1_w = norms[0]; a.norm1_b = norms[1]; a.norm_cross_w = norms[2]; a.norm_cross_b = norms[3];
    a.norm2_w = norms[4]; a.norm2_b = norms[5];
    for (size_t i = 0; i < sizeof keys / 4; i++) {
        keys[i] = act_bf16 ? bf16_round(uniform()) : uniform();
        values[i] = act_bf16 ? bf16_round(uniform()) : uniform();
        kb[i] = float_to_bf16(keys[i]); vb[i] = float_to_bf16(values[i]);
    }
    for (size_t i = 0; i < sizeof mem_k / 4; i++) {
        mem_k[i] = uniform(); mem_v[i] = uniform();
        mkb[i] = float_to_bf16(mem_k[i]); mvb[i] = float_to_bf16(mem_v[i]);
    }
    for (int i = 0; i < M * D; i++) { xf[i] = uniform(); xb[i] = float_to_bf16(xf[i]); }
    a.keys = act_bf16 ? (void *)kb : keys; a.values = act_bf16 ? (void *)vb : values;
    a.mem_keys = act_bf16 ? (void *)mkb : mem_k; a.mem_values = act_bf16 ? (void *)mvb : mem_v;
    if (layer_step(&a, act_bf16 ? (void *)xb : xf, act_bf16 ? (void *)yb : yf) != 0) {
        printf("layer_step refused\n");
        exit(1);
    }
    printf("layer_step %s-%s", act_bf16 ? "bf16rows" : "f32rows", kind == 0 ? "f32" : kind == 1 ? "bf16" : "int8");
    for (int i = 0; i < M * D; i++) printf(" %.9g", act_bf16 ? bf16_to_float(yb[i]) : yf[i]);
    printf("\n");
}

int main(void) {
    printf("isa %s\n", kernel_isa());
    const int64_t shapes[][2] = {{7, 33}, {64, 1024}, {9, 100}, {5, 80}, {3, 4100}, {130, 64}};
    const int64_t rows[] = {1, 2, 3, 5};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) products(rows[r], shapes[s][0], shapes[s][1]);
    gelu_check();
    layer_check(0, 0); layer_check(1, 1); layer_check(1, 2); layer_check(0, 2);
    return 0;
}

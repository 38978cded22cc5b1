// LTC kernels (ncps semantics, crates/cells/src/cells/ltc.rs and kernels/cpu/ltc.rs): the sensory synapses
// of one step, one ODE unfold, and their backward passes. Parameters are the *effective* ones
// (softplus and wiring masks applied), laid out as in cells/ltc.rs's PackedLayout: sigma, mu,
// w, erev (H×H, row = presynaptic i), sensory sigma, mu, w, erev (D×H), cm, gleak, vleak (H).
// Forward of a step: ltc_sensory once, then ltc_unfold L times (v → v'), with
//   v'_j = (cm_t v_j + gleak vleak + ns_j + Σ_i a_ij E_ij) / (cm_t + gleak + ds_j + Σ_i a_ij + ε),
//   a_ij = W_ij σ(σ_ij (v_i − μ_ij)),  cm_t = cm_j · scale_b,  scale_b = L / Δt_b.
// The backward kernels recompute the synapse activations from the saved states. Sums over the
// batch run inside one thread per parameter (no atomics: the results are deterministic).
#include "common.cuh"

// x (B, D) → num, den (B, H): Σ_d a and Σ_d a·E of the sensory synapses.
template <typename T>
__device__ void ltc_sensory(int batch, int inputs, int units, const T* __restrict__ x,
                            const T* __restrict__ ssig, const T* __restrict__ smu,
                            const T* __restrict__ sw, const T* __restrict__ serev,
                            T* __restrict__ num, T* __restrict__ den) {
    long long idx = global_index();
    if (idx >= (long long)batch * units) return;
    long long b = idx / units;
    int j = (int)(idx % units);
    T nj = T(0), dj = T(0);
    for (int d = 0; d < inputs; ++d) {
        int k = d * units + j;
        T a = sw[k] * sigmoid_t(ssig[k] * (x[b * inputs + d] - smu[k]));
        nj += a * serev[k];
        dj += a;
    }
    num[idx] = nj;
    den[idx] = dj;
}

// One unfold: v (B, H) → v_out (B, H); ns, ds (B, H) from ltc_sensory; scale (B).
template <typename T>
__device__ void ltc_unfold(int batch, int units, T eps, const T* __restrict__ v,
                           const T* __restrict__ sigma, const T* __restrict__ mu,
                           const T* __restrict__ w, const T* __restrict__ erev,
                           const T* __restrict__ cm, const T* __restrict__ gleak,
                           const T* __restrict__ vleak, const T* __restrict__ ns,
                           const T* __restrict__ ds, const T* __restrict__ scale,
                           T* __restrict__ v_out) {
    long long idx = global_index();
    if (idx >= (long long)batch * units) return;
    long long b = idx / units;
    int j = (int)(idx % units);
    const T* vb = v + b * units;
    T cm_t = cm[j] * scale[b];
    T num = cm_t * vb[j] + gleak[j] * vleak[j] + ns[idx];
    T den = cm_t + gleak[j] + ds[idx];
    for (int i = 0; i < units; ++i) {
        int k = i * units + j;
        T a = w[k] * sigmoid_t(sigma[k] * (vb[i] - mu[k]));
        num += a * erev[k];
        den += a;
    }
    v_out[idx] = num / (den + eps);
}

// Backward of one unfold, part 1, per (sample, neuron j): from g = ∂L/∂v' and the saved v, v',
// ∂num = g/den and ∂den = −g v'/den; adds them to the step's sensory gradients dns, dds.
template <typename T>
__device__ void ltc_unfold_backward_neurons(int batch, int units, T eps, const T* __restrict__ v,
                                            const T* __restrict__ v_out,
                                            const T* __restrict__ g, const T* __restrict__ sigma,
                                            const T* __restrict__ mu, const T* __restrict__ w,
                                            const T* __restrict__ cm,
                                            const T* __restrict__ gleak,
                                            const T* __restrict__ ds,
                                            const T* __restrict__ scale, T* __restrict__ dnum,
                                            T* __restrict__ dden, T* __restrict__ dns,
                                            T* __restrict__ dds) {
    long long idx = global_index();
    if (idx >= (long long)batch * units) return;
    long long b = idx / units;
    int j = (int)(idx % units);
    const T* vb = v + b * units;
    T den = cm[j] * scale[b] + gleak[j] + ds[idx] + eps;
    for (int i = 0; i < units; ++i) {
        int k = i * units + j;
        den += w[k] * sigmoid_t(sigma[k] * (vb[i] - mu[k]));
    }
    T dn = g[idx] / den;
    T dd = -g[idx] * v_out[idx] / den;
    dnum[idx] = dn;
    dden[idx] = dd;
    dns[idx] += dn;
    dds[idx] += dd;
}

// The gradient of the presynaptic values `pre` (B, P) through synapses (P × H) driven by
// ∂num, ∂den (B, H): per (sample, presynaptic p), Σ_j ∂z_pj σ_pj with
// ∂z = (∂num_j E_pj + ∂den_j) W_pj s (1 − s), s = σ(σ_pj (pre_p − μ_pj)).
template <typename T>
__device__ T synapse_input_gradient(long long b, int p, int units, T pre_p,
                                    const T* __restrict__ sigma, const T* __restrict__ mu,
                                    const T* __restrict__ w, const T* __restrict__ erev,
                                    const T* __restrict__ dnum, const T* __restrict__ dden) {
    const T* dn = dnum + b * units;
    const T* dd = dden + b * units;
    T acc = T(0);
    for (int j = 0; j < units; ++j) {
        int k = p * units + j;
        T s = sigmoid_t(sigma[k] * (pre_p - mu[k]));
        T da = dn[j] * erev[k] + dd[j];
        acc += da * w[k] * s * (T(1) - s) * sigma[k];
    }
    return acc;
}

// The parameter gradients of synapses (P × H) fed by `pre` (B, P), per synapse k = (p, j),
// summed over the batch and added (+=) to dsigma, dmu, dw, derev.
template <typename T>
__device__ void synapse_parameter_gradients(int batch, int pres, int units,
                                            const T* __restrict__ pre,
                                            const T* __restrict__ sigma,
                                            const T* __restrict__ mu, const T* __restrict__ w,
                                            const T* __restrict__ erev,
                                            const T* __restrict__ dnum,
                                            const T* __restrict__ dden, T* __restrict__ dsigma,
                                            T* __restrict__ dmu, T* __restrict__ dw,
                                            T* __restrict__ derev) {
    long long k = global_index();
    if (k >= (long long)pres * units) return;
    int p = (int)(k / units), j = (int)(k % units);
    T gs = T(0), gm = T(0), gw = T(0), ge = T(0);
    for (int b = 0; b < batch; ++b) {
        T x = pre[(long long)b * pres + p];
        T s = sigmoid_t(sigma[k] * (x - mu[k]));
        T dn = dnum[(long long)b * units + j];
        T da = dn * erev[k] + dden[(long long)b * units + j];
        T dz = da * w[k] * s * (T(1) - s);
        gw += da * s;
        ge += dn * w[k] * s;
        gs += dz * (x - mu[k]);
        gm -= dz * sigma[k];
    }
    dsigma[k] += gs;
    dmu[k] += gm;
    dw[k] += gw;
    derev[k] += ge;
}

// Part 2, per (sample, presynaptic neuron i): g_prev = ∂L/∂v_i = ∂num_i cm_t_i
// + Σ_j ∂z_ij σ_ij.
template <typename T>
__device__ void ltc_unfold_backward_inputs(int batch, int units, const T* __restrict__ v,
                                           const T* __restrict__ sigma,
                                           const T* __restrict__ mu, const T* __restrict__ w,
                                           const T* __restrict__ erev,
                                           const T* __restrict__ cm,
                                           const T* __restrict__ scale,
                                           const T* __restrict__ dnum,
                                           const T* __restrict__ dden, T* __restrict__ g_prev) {
    long long idx = global_index();
    if (idx >= (long long)batch * units) return;
    long long b = idx / units;
    int i = (int)(idx % units);
    g_prev[idx] = dnum[idx] * cm[i] * scale[b] +
                  synapse_input_gradient(b, i, units, v[idx], sigma, mu, w, erev, dnum, dden);
}

// Part 3, per synapse (i, j), summed over the batch into the parameter gradients (+=).
template <typename T>
__device__ void ltc_unfold_backward_synapses(int batch, int units, const T* __restrict__ v,
                                             const T* __restrict__ sigma,
                                             const T* __restrict__ mu, const T* __restrict__ w,
                                             const T* __restrict__ erev,
                                             const T* __restrict__ dnum,
                                             const T* __restrict__ dden, T* __restrict__ dsigma,
                                             T* __restrict__ dmu, T* __restrict__ dw,
                                             T* __restrict__ derev) {
    synapse_parameter_gradients(batch, units, units, v, sigma, mu, w, erev, dnum, dden, dsigma,
                                dmu, dw, derev);
}

// Part 4, per neuron j, summed over the batch: cm, gleak, vleak (+=).
template <typename T>
__device__ void ltc_unfold_backward_leak(int batch, int units, const T* __restrict__ v,
                                         const T* __restrict__ gleak,
                                         const T* __restrict__ vleak,
                                         const T* __restrict__ scale,
                                         const T* __restrict__ dnum,
                                         const T* __restrict__ dden, T* __restrict__ dcm,
                                         T* __restrict__ dgleak, T* __restrict__ dvleak) {
    long long j = global_index();
    if (j >= units) return;
    T gc = T(0), gg = T(0), gv = T(0);
    for (int b = 0; b < batch; ++b) {
        long long q = (long long)b * units + j;
        gc += (dnum[q] * v[q] + dden[q]) * scale[b];
        gg += dnum[q] * vleak[j] + dden[q];
        gv += dnum[q] * gleak[j];
    }
    dcm[j] += gc;
    dgleak[j] += gg;
    dvleak[j] += gv;
}

// Sensory backward, per sensory synapse (d, j), summed over the batch (+=), from the step's
// accumulated dns, dds (B, H).
template <typename T>
__device__ void ltc_sensory_backward_synapses(int batch, int inputs, int units,
                                              const T* __restrict__ x,
                                              const T* __restrict__ ssig,
                                              const T* __restrict__ smu,
                                              const T* __restrict__ sw,
                                              const T* __restrict__ serev,
                                              const T* __restrict__ dns,
                                              const T* __restrict__ dds, T* __restrict__ dssig,
                                              T* __restrict__ dsmu, T* __restrict__ dsw,
                                              T* __restrict__ dserev) {
    synapse_parameter_gradients(batch, inputs, units, x, ssig, smu, sw, serev, dns, dds, dssig,
                                dsmu, dsw, dserev);
}

// Sensory backward, per (sample, input d): dx (B, D).
template <typename T>
__device__ void ltc_sensory_backward_inputs(int batch, int inputs, int units,
                                            const T* __restrict__ x,
                                            const T* __restrict__ ssig,
                                            const T* __restrict__ smu,
                                            const T* __restrict__ sw,
                                            const T* __restrict__ serev,
                                            const T* __restrict__ dns,
                                            const T* __restrict__ dds, T* __restrict__ dx) {
    long long idx = global_index();
    if (idx >= (long long)batch * inputs) return;
    long long b = idx / inputs;
    int d = (int)(idx % inputs);
    dx[idx] = synapse_input_gradient(b, d, units, x[idx], ssig, smu, sw, serev, dns, dds);
}

#define LTC_ENTRY_POINTS(SUFFIX, T)                                                               \
    extern "C" __global__ void ltc_sensory_##SUFFIX(int batch, int inputs, int units, const T* x, \
                                                    const T* ssig, const T* smu, const T* sw,     \
                                                    const T* serev, T* num, T* den) {             \
        ltc_sensory<T>(batch, inputs, units, x, ssig, smu, sw, serev, num, den);                  \
    }                                                                                             \
    extern "C" __global__ void ltc_unfold_##SUFFIX(                                               \
        int batch, int units, T eps, const T* v, const T* sigma, const T* mu, const T* w,         \
        const T* erev, const T* cm, const T* gleak, const T* vleak, const T* ns, const T* ds,     \
        const T* scale, T* v_out) {                                                               \
        ltc_unfold<T>(batch, units, eps, v, sigma, mu, w, erev, cm, gleak, vleak, ns, ds, scale,  \
                      v_out);                                                                     \
    }                                                                                             \
    extern "C" __global__ void ltc_unfold_backward_neurons_##SUFFIX(                              \
        int batch, int units, T eps, const T* v, const T* v_out, const T* g, const T* sigma,      \
        const T* mu, const T* w, const T* cm, const T* gleak, const T* ds, const T* scale,        \
        T* dnum, T* dden, T* dns, T* dds) {                                                       \
        ltc_unfold_backward_neurons<T>(batch, units, eps, v, v_out, g, sigma, mu, w, cm, gleak,   \
                                       ds, scale, dnum, dden, dns, dds);                          \
    }                                                                                             \
    extern "C" __global__ void ltc_unfold_backward_inputs_##SUFFIX(                               \
        int batch, int units, const T* v, const T* sigma, const T* mu, const T* w,                \
        const T* erev, const T* cm, const T* scale, const T* dnum, const T* dden, T* g_prev) {    \
        ltc_unfold_backward_inputs<T>(batch, units, v, sigma, mu, w, erev, cm, scale, dnum,       \
                                      dden, g_prev);                                              \
    }                                                                                             \
    extern "C" __global__ void ltc_unfold_backward_synapses_##SUFFIX(                             \
        int batch, int units, const T* v, const T* sigma, const T* mu, const T* w,                \
        const T* erev, const T* dnum, const T* dden, T* dsigma, T* dmu, T* dw, T* derev) {        \
        ltc_unfold_backward_synapses<T>(batch, units, v, sigma, mu, w, erev, dnum, dden, dsigma,  \
                                        dmu, dw, derev);                                          \
    }                                                                                             \
    extern "C" __global__ void ltc_unfold_backward_leak_##SUFFIX(                                 \
        int batch, int units, const T* v, const T* gleak, const T* vleak, const T* scale,         \
        const T* dnum, const T* dden, T* dcm, T* dgleak, T* dvleak) {                             \
        ltc_unfold_backward_leak<T>(batch, units, v, gleak, vleak, scale, dnum, dden, dcm,        \
                                    dgleak, dvleak);                                              \
    }                                                                                             \
    extern "C" __global__ void ltc_sensory_backward_synapses_##SUFFIX(                            \
        int batch, int inputs, int units, const T* x, const T* ssig, const T* smu, const T* sw,   \
        const T* serev, const T* dns, const T* dds, T* dssig, T* dsmu, T* dsw, T* dserev) {       \
        ltc_sensory_backward_synapses<T>(batch, inputs, units, x, ssig, smu, sw, serev, dns, dds, \
                                         dssig, dsmu, dsw, dserev);                               \
    }                                                                                             \
    extern "C" __global__ void ltc_sensory_backward_inputs_##SUFFIX(                              \
        int batch, int inputs, int units, const T* x, const T* ssig, const T* smu, const T* sw,   \
        const T* serev, const T* dns, const T* dds, T* dx) {                                      \
        ltc_sensory_backward_inputs<T>(batch, inputs, units, x, ssig, smu, sw, serev, dns, dds,   \
                                       dx);                                                       \
    }

LTC_ENTRY_POINTS(f32, float)
LTC_ENTRY_POINTS(f64, double)

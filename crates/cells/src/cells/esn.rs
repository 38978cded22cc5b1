//! Echo-state reservoir (Jaeger 2001, GMD Report 148), in the leaky form of Jaeger, Lukoševičius,
//! Popovici & Siewert (2007) that ReservoirPy's `Reservoir` node runs:
//!
//! ```text
//! h' = (1 − a)·h + a·tanh(x W_inᵀ + h Wᵀ + b)
//! ```
//!
//! with leak rate a ∈ (0, 1]. The weights are drawn once and never learned by the reservoir
//! method: the read-out is fitted in closed form by ridge regression on the states
//! (`remanence train --cell esn`, the trainer's ridge learner). Initialisation
//! ([`ReservoirOptions`], ReservoirPy's defaults):
//!
//! - `W` (H, H): round(p·H²) positions (at least one) drawn without replacement, each N(0, 1)
//!   (drawn again, from the same stream, while the draw is nilpotent, ρ = 0), then scaled to spectral radius ρ(W) = `spectral_radius` (computed by
//!   [`crate::linalg::spectral_radius`]). Jaeger's condition for echo states at zero input is
//!   ρ < 1 (necessary); σ_max(W) < 1 is sufficient (`remanence probe esp` reports both).
//! - `W_in` (H, I): round(p_in·H·I) positions (at least one), each ±1 times `input_scaling`.
//! - `b` (H): ±1 times `bias_scaling` (zero by default).
//!
//! Names for layer k: `weight_ih_l{k}` (H, I), `weight_hh_l{k}` (H, H), `bias_l{k}` (H), as the
//! SRN; a stack of layers is a deep reservoir, each layer reading the states of the one below.
//! Trained by gradient (`--trainer gradient`) every weight learns, like any leaky tanh network.
//! On the CPU the sequence runs in the fused Elman kernel with a leak (`kernels/cpu/srn.rs`),
//! forward and backward, tested against the step here.
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::torch_layer::pack;
use crate::cell::RecurrentCell;
use crate::config::ReservoirOptions;
use crate::error::{CellError, Result};
use crate::kernels::cpu::{Fused, SrnKernel};
use crate::linalg::{spectral_radius, Mat};
use crate::params::ParamStore;
use crate::route::Route;
use crate::state::CellState;

pub struct Esn {
    w_ih: Tensor,
    w_hh: Tensor,
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    bias: Tensor,
    leak: f64,
    inputs: usize,
    units: usize,
}

/// Standard normal draw by Box–Muller (two uniforms from the seeded stream).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `count` distinct positions of a `rows × cols` matrix, at least one.
fn positions(rng: &mut ChaCha8Rng, rows: usize, cols: usize, share: f64) -> Vec<usize> {
    let n = rows * cols;
    let count = ((share * n as f64).round() as usize).clamp(1, n);
    let mut idx = sample(rng, n, count).into_vec();
    idx.sort_unstable();
    idx
}

/// The reservoir's weights of one layer, drawn from `rng`: (W_in (H·I), W (H·H), b (H)) in
/// row-major order.
pub fn draw_reservoir(
    rng: &mut ChaCha8Rng,
    inputs: usize,
    units: usize,
    opts: &ReservoirOptions,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    opts.validate()?;
    // A very sparse draw can be nilpotent (no cycle among its non-zero weights: ρ = 0), which
    // no scaling fixes; it is drawn again from the same stream.
    const ATTEMPTS: usize = 100;
    let mut drawn = None;
    for _ in 0..ATTEMPTS {
        let mut w = vec![0.0; units * units];
        for p in positions(rng, units, units, opts.connectivity) {
            w[p] = normal(rng);
        }
        let rho = spectral_radius(&Mat::from_vec(units, units, w.clone())?)?;
        if rho > 0.0 {
            drawn = Some((w, rho));
            break;
        }
    }
    let Some((mut w, rho)) = drawn else {
        return Err(CellError::Config(format!(
            "{ATTEMPTS} draws of the {units}×{units} reservoir matrix (connectivity {}) all had \
             spectral radius 0 and cannot be scaled to {}: raise the connectivity or the units",
            opts.connectivity, opts.spectral_radius
        )));
    };
    let s = opts.spectral_radius / rho;
    w.iter_mut().for_each(|v| *v *= s);
    let sign = |rng: &mut ChaCha8Rng| if rng.random::<bool>() { 1.0 } else { -1.0 };
    let mut w_in = vec![0.0; units * inputs];
    for p in positions(rng, units, inputs, opts.input_connectivity) {
        w_in[p] = sign(rng) * opts.input_scaling;
    }
    let b = (0..units).map(|_| sign(rng) * opts.bias_scaling).collect();
    Ok((w_in, w, b))
}

impl Esn {
    /// Before building a fresh model from a seeded store: draws every layer's reservoir from the
    /// store's stream and adds it under `prefix` (a store of loaded tensors is left as it is).
    pub fn seed_reservoir(
        store: &ParamStore,
        prefix: &str,
        layer_inputs: &[usize],
        units: usize,
        opts: &ReservoirOptions,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        for (k, &inputs) in layer_inputs.iter().enumerate() {
            let Some(drawn) = store.with_rng(|rng| draw_reservoir(rng, inputs, units, opts)) else {
                return Ok(());
            };
            let (w_in, w, b) = drawn?;
            let tensor = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> {
                Ok(Tensor::from_vec(v, shape, &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(device)?)
            };
            store.insert_if_absent(
                &format!("{prefix}.weight_ih_l{k}"),
                tensor(w_in, &[units, inputs])?,
            )?;
            store.insert_if_absent(
                &format!("{prefix}.weight_hh_l{k}"),
                tensor(w, &[units, units])?,
            )?;
            store.insert_if_absent(&format!("{prefix}.bias_l{k}"), tensor(b, &[units])?)?;
        }
        Ok(())
    }

    pub fn new(
        input_size: usize,
        units: usize,
        layer: usize,
        opts: &ReservoirOptions,
        vb: VarBuilder,
    ) -> Result<Self> {
        opts.validate()?;
        // The tensors come from `seed_reservoir` (fresh) or a checkpoint; the hint is never used
        // by a model built through `SequenceModel::init`.
        let init = Init::Const(0.0);
        let w_ih = vb.get_with_hints((units, input_size), &format!("weight_ih_l{layer}"), init)?;
        let w_hh = vb.get_with_hints((units, units), &format!("weight_hh_l{layer}"), init)?;
        let bias = vb.get_with_hints(units, &format!("bias_l{layer}"), init)?;
        Ok(Self {
            w_ih_t: w_ih.t()?,
            w_hh_t: w_hh.t()?,
            w_ih,
            w_hh,
            bias,
            leak: opts.leak_rate,
            inputs: input_size,
            units,
        })
    }
}

impl RecurrentCell for Esn {
    fn input_size(&self) -> usize {
        self.inputs
    }
    fn hidden_size(&self) -> usize {
        self.units
    }
    fn step(&self, x: &Tensor, _dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let pre =
            (x.matmul(&self.w_ih_t)? + state.h.matmul(&self.w_hh_t)?)?.broadcast_add(&self.bias)?;
        let act = pre.tanh()?;
        let h = if self.leak == 1.0 {
            act
        } else {
            ((&state.h * (1.0 - self.leak))? + (act * self.leak)?)?
        };
        Ok(CellState { h, c: None })
    }

    /// On the CPU, the fused Elman kernel with its leak (`kernels/cpu/srn.rs`): the whole
    /// sequence in one op, forward and backward, tested against [`Esn::step`].
    fn forward_sequence(
        &self,
        x: &Tensor,
        _dt: Option<&Tensor>,
        state: &CellState,
        route: Route,
    ) -> Result<Option<(Tensor, CellState)>> {
        let Route::CpuFused { threads } = route else {
            return Ok(None);
        };
        let t = x.dim(1)?;
        let kernel = SrnKernel {
            input: x.dim(2)?,
            hidden: self.units,
            logistic: false,
            leak: (self.leak < 1.0).then_some(self.leak),
        };
        let w = pack(&[&self.w_ih, &self.w_hh, &self.bias])?;
        let (hs, _) = Fused::new(kernel, threads).apply(x, &w, &state.h)?;
        let h_n = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::sigma_max;
    use rand::SeedableRng;

    #[test]
    fn the_drawn_matrix_has_the_asked_spectral_radius_and_connectivity() {
        let opts = ReservoirOptions {
            spectral_radius: 0.9,
            connectivity: 0.2,
            input_connectivity: 0.5,
            input_scaling: 0.3,
            bias_scaling: 0.1,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (w_in, w, b) = draw_reservoir(&mut rng, 4, 50, &opts).unwrap();
        let m = Mat::from_vec(50, 50, w.clone()).unwrap();
        assert!((spectral_radius(&m).unwrap() - 0.9).abs() < 1e-9);
        // σ_max ≥ ρ for any matrix; a random sparse one is far from normal.
        assert!(sigma_max(&m).unwrap() > 0.9);
        assert_eq!(w.iter().filter(|v| **v != 0.0).count(), 500);
        assert_eq!(w_in.iter().filter(|v| **v != 0.0).count(), 100);
        assert!(w_in.iter().all(|v| *v == 0.0 || v.abs() == 0.3));
        assert!(b.iter().all(|v| v.abs() == 0.1));
        // Same seed, same reservoir.
        let again = draw_reservoir(&mut ChaCha8Rng::seed_from_u64(3), 4, 50, &opts).unwrap();
        assert_eq!(again.1, w);
    }

    #[test]
    fn the_step_is_the_leaky_update() {
        let dev = Device::Cpu;
        let opts = ReservoirOptions {
            leak_rate: 0.25,
            ..Default::default()
        };
        let store = ParamStore::from_tensors(
            [
                (
                    "weight_ih_l0".to_string(),
                    Tensor::new(&[[0.5f64], [-1.0]], &dev).unwrap(),
                ),
                (
                    "weight_hh_l0".to_string(),
                    Tensor::new(&[[0.0f64, 0.4], [-0.3, 0.1]], &dev).unwrap(),
                ),
                (
                    "bias_l0".to_string(),
                    Tensor::new(&[0.1f64, 0.0], &dev).unwrap(),
                ),
            ],
            "test",
        )
        .unwrap();
        let esn = Esn::new(1, 2, 0, &opts, store.var_builder(DType::F64, &dev)).unwrap();
        let h0 = [0.2, -0.6];
        let state = CellState {
            h: Tensor::new(&[h0], &dev).unwrap(),
            c: None,
        };
        let x = Tensor::new(&[[0.8f64]], &dev).unwrap();
        let got: Vec<f64> = esn
            .step(&x, None, &state)
            .unwrap()
            .h
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let pre: [f64; 2] = [
            0.5 * 0.8 + 0.4 * h0[1] + 0.1,
            -0.8 + (-0.3 * h0[0] + 0.1 * h0[1]),
        ];
        for i in 0..2 {
            let want = 0.75 * h0[i] + 0.25 * pre[i].tanh();
            assert!((got[i] - want).abs() < 1e-15, "{i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn a_nilpotent_draw_is_drawn_again() {
        // One non-zero weight in a 3×3 matrix: off the diagonal it is nilpotent (ρ = 0, 6 of 9
        // positions); the redraw must end on the diagonal, scaled to ρ = 0.5.
        let opts = ReservoirOptions {
            connectivity: 0.01,
            spectral_radius: 0.5,
            ..Default::default()
        };
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (_, w, _) = draw_reservoir(&mut rng, 1, 3, &opts).unwrap();
            let nz: Vec<usize> = (0..9).filter(|&p| w[p] != 0.0).collect();
            assert_eq!(nz.len(), 1);
            assert!([0, 4, 8].contains(&nz[0]), "seed {seed}: {nz:?}");
            assert!((w[nz[0]].abs() - 0.5).abs() < 1e-12);
        }
        // A spectral radius of 0 asked for: the zero matrix, no error.
        let zero = ReservoirOptions {
            spectral_radius: 0.0,
            ..Default::default()
        };
        let (_, w, _) = draw_reservoir(&mut ChaCha8Rng::seed_from_u64(0), 2, 10, &zero).unwrap();
        assert!(w.iter().all(|v| *v == 0.0));
    }
}

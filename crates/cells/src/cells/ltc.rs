//! Liquid time-constant cell with ncps's semantics (`ncps.torch.LTCCell`).
//!
//! State v (B, H) of H neurons driven by D sensory channels. Each input step of elapsed time Δt
//! takes L = `ode_unfolds` semi-implicit Euler steps of size Δt/L of
//! `cm dv_j/dt = gleak_j (vleak_j − v_j) + Σ_i W_ij σ(σ_ij (v_i − μ_ij)) (E_ij − v_j) + (same over inputs)`:
//!
//! ```text
//! x   = input·input_w + input_b                          (affine mapping)
//! sA  = P(sensory_w)·mask_s·σ(sensory_sigma (x_d − sensory_mu))    (B, D, H), once per step
//! cm_t = P(cm) / (Δt / L)
//! repeat L times:
//!     A  = P(w)·mask·σ(sigma (v_i − mu))                  (B, H_src, H_dst)
//!     v ← (cm_t v + P(gleak) vleak + Σ_i A E + Σ_d sA sE) / (cm_t + P(gleak) + Σ_i A + Σ_d sA + ε)
//! output = v[:, :M]·output_w + output_b                  (the M motor neurons)
//! ```
//!
//! P is softplus (constraints at use time, the `LTC` wrapper's default) or the identity with
//! w, sensory_w, cm and gleak clamped to ≥ 0 after every update (`constraint = "clip"`).
//! Parameter names are ncps's: `gleak vleak cm sigma mu w erev sensory_sigma sensory_mu sensory_w
//! sensory_erev sparsity_mask sensory_sparsity_mask input_w input_b output_w output_b`.
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::cell::RecurrentCell;
use crate::config::{Constraint, CtOptions, Mapping};
use crate::error::{CellError, Result};
use crate::kernels::cpu::{Fused, LtcKernel, Synapses};
use crate::kernels::cuda::{sequence, LtcSequence};
use crate::ops::softplus;
use crate::params::ParamStore;
use crate::route::Route;
use crate::state::CellState;
use crate::wiring::Wiring;

pub struct Ltc {
    gleak: Tensor,
    vleak: Tensor,
    cm: Tensor,
    sigma: Tensor,
    mu: Tensor,
    w: Tensor,
    erev: Tensor,
    sensory_sigma: Tensor,
    sensory_mu: Tensor,
    sensory_w: Tensor,
    sensory_erev: Tensor,
    mask: Tensor,
    sensory_mask: Tensor,
    input_w: Option<Tensor>,
    input_b: Option<Tensor>,
    output_w: Option<Tensor>,
    output_b: Option<Tensor>,
    softplus: bool,
    unfolds: usize,
    epsilon: f64,
    inputs: usize,
    units: usize,
    motor: usize,
    /// Full names of the parameters clamped ≥ 0 after each update in clip mode.
    nonnegative: Vec<String>,
    /// The wiring's recurrent synapses, for the fused CPU kernel, when it is sparse enough to
    /// run them alone.
    synapses: Option<std::sync::Arc<Synapses>>,
    sensory_synapses: Option<std::sync::Arc<Synapses>>,
}

fn u(lo: f64, up: f64) -> Init {
    Init::Uniform { lo, up }
}

impl Ltc {
    /// Puts the wiring's masks and initial reversal potentials into a seeded store under
    /// `prefix` (unless present), so that `new` finds them.
    pub fn seed_wiring(
        store: &ParamStore,
        prefix: &str,
        wiring: &Wiring,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        let (h, d) = (wiring.units, wiring.inputs);
        let f = |v: &[i8], abs: bool| -> Vec<f64> {
            v.iter()
                .map(|&x| if abs { x.abs() as f64 } else { x as f64 })
                .collect()
        };
        for (name, vals, shape) in [
            ("sparsity_mask", f(&wiring.adjacency, true), (h, h)),
            ("erev", f(&wiring.adjacency, false), (h, h)),
            ("sensory_sparsity_mask", f(&wiring.sensory, true), (d, h)),
            ("sensory_erev", f(&wiring.sensory, false), (d, h)),
        ] {
            let t = Tensor::from_vec(vals, shape, &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(device)?;
            store.insert_if_absent(&format!("{prefix}.{name}"), t)?;
        }
        Ok(())
    }

    /// The wiring a configuration asks for.
    pub fn wiring(input_size: usize, units: usize, opts: &CtOptions) -> Result<Wiring> {
        opts.wiring.build(units, input_size, opts.wiring_seed)
    }

    /// Builds the cell from `vb` (whose masks fix the wiring). `motor` is the number of output
    /// neurons.
    pub fn new(
        input_size: usize,
        units: usize,
        motor: usize,
        opts: &CtOptions,
        vb: VarBuilder,
    ) -> Result<Self> {
        if motor == 0 || motor > units {
            return Err(CellError::Config(format!(
                "LTC output size {motor} must be between 1 and the {units} units"
            )));
        }
        let softplus = opts.constraint == Constraint::Softplus;
        let (imap, omap) = (opts.input_mapping, opts.output_mapping);
        let (h, d) = (units, input_size);
        let zero = Init::Const(0.0);
        let one = Init::Const(1.0);
        let mask = vb.get_with_hints((h, h), "sparsity_mask", one)?.detach();
        let sensory_mask = vb
            .get_with_hints((d, h), "sensory_sparsity_mask", one)?
            .detach();
        let values = |m: &Tensor| m.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
        let synapses = Synapses::if_sparse(&values(&mask)?, h);
        let sensory_synapses = Synapses::if_sparse(&values(&sensory_mask)?, h);
        let nonnegative = ["gleak", "cm", "w", "sensory_w"]
            .iter()
            .map(|n| format!("{}.{n}", vb.prefix()))
            .collect();
        Ok(Self {
            gleak: vb.get_with_hints(h, "gleak", u(0.001, 1.0))?,
            vleak: vb.get_with_hints(h, "vleak", u(-0.2, 0.2))?,
            cm: vb.get_with_hints(h, "cm", u(0.4, 0.6))?,
            sigma: vb.get_with_hints((h, h), "sigma", u(3.0, 8.0))?,
            mu: vb.get_with_hints((h, h), "mu", u(0.3, 0.8))?,
            w: vb.get_with_hints((h, h), "w", u(0.001, 1.0))?,
            erev: vb.get_with_hints((h, h), "erev", zero)?,
            sensory_sigma: vb.get_with_hints((d, h), "sensory_sigma", u(3.0, 8.0))?,
            sensory_mu: vb.get_with_hints((d, h), "sensory_mu", u(0.3, 0.8))?,
            sensory_w: vb.get_with_hints((d, h), "sensory_w", u(0.001, 1.0))?,
            sensory_erev: vb.get_with_hints((d, h), "sensory_erev", zero)?,
            mask,
            sensory_mask,
            input_w: (imap != Mapping::None)
                .then(|| vb.get_with_hints(d, "input_w", one))
                .transpose()?,
            input_b: (imap == Mapping::Affine)
                .then(|| vb.get_with_hints(d, "input_b", zero))
                .transpose()?,
            output_w: (omap != Mapping::None)
                .then(|| vb.get_with_hints(motor, "output_w", one))
                .transpose()?,
            output_b: (omap == Mapping::Affine)
                .then(|| vb.get_with_hints(motor, "output_b", zero))
                .transpose()?,
            softplus,
            unfolds: opts.ode_unfolds,
            epsilon: opts.epsilon,
            inputs: d,
            units: h,
            motor,
            nonnegative,
            synapses,
            sensory_synapses,
        })
    }

    fn p(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.softplus {
            softplus(t)?
        } else {
            t.clone()
        })
    }

    /// The packed effective parameters of the fused kernel (see [`PackedLayout`]).
    fn packed(&self) -> Result<Tensor> {
        let sw = (self.p(&self.sensory_w)? * &self.sensory_mask)?;
        let w = (self.p(&self.w)? * &self.mask)?;
        let parts = [
            self.sigma.flatten_all()?,
            self.mu.flatten_all()?,
            w.flatten_all()?,
            self.erev.flatten_all()?,
            self.sensory_sigma.flatten_all()?,
            self.sensory_mu.flatten_all()?,
            sw.flatten_all()?,
            self.sensory_erev.flatten_all()?,
            self.p(&self.cm)?,
            self.p(&self.gleak)?,
            self.vleak.clone(),
        ];
        Ok(Tensor::cat(&parts, 0)?)
    }

    fn map_inputs(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        if let Some(w) = &self.input_w {
            x = x.broadcast_mul(w)?;
        }
        if let Some(b) = &self.input_b {
            x = x.broadcast_add(b)?;
        }
        Ok(x)
    }

    /// Synaptic activations `w·σ(sigma (v_i − mu))` of pre-synaptic `v` (B, S) → (B, S, H).
    fn synapses(v: &Tensor, w: &Tensor, mu: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        let z = v.unsqueeze(2)?.broadcast_sub(mu)?.broadcast_mul(sigma)?;
        Ok(candle_nn::ops::sigmoid(&z)?.broadcast_mul(w)?)
    }
}

impl Ltc {
    /// The sequence as the GPU runs it: one [`LtcSequence`](crate::kernels::cuda::LtcSequence)
    /// op for every step (per step the sensory synapses and every unfold; CUDA kernels on a GPU,
    /// their host build here), whose backward op recomputes each step's unfolds from the state
    /// before it. Autograd sees a constant number of nodes per layer.
    pub fn device_sequence(
        &self,
        x: &Tensor,
        dt: Option<&Tensor>,
        state: &CellState,
    ) -> Result<(Tensor, CellState)> {
        let dt: Option<Vec<f64>> = dt
            .map(|d| d.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>())
            .transpose()?;
        let op = LtcSequence {
            layout: PackedLayout {
                h: self.units,
                d: self.inputs,
            },
            unfolds: self.unfolds,
            epsilon: self.epsilon,
            dt,
        };
        let xin = self.map_inputs(x)?;
        let (all, v) = sequence::ltc_sequence(&xin, &self.packed()?, &state.h, op)?;
        let last = CellState { h: v, c: None };
        Ok((self.output(&CellState { h: all, c: None })?, last))
    }
}

impl RecurrentCell for Ltc {
    fn input_size(&self) -> usize {
        self.inputs
    }
    fn hidden_size(&self) -> usize {
        self.units
    }
    fn output_size(&self) -> usize {
        self.motor
    }

    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let x = self.map_inputs(x)?;
        let sw = (self.p(&self.sensory_w)? * &self.sensory_mask)?;
        let sa = Self::synapses(&x, &sw, &self.sensory_mu, &self.sensory_sigma)?; // (B, D, H)
        let num_s = sa.broadcast_mul(&self.sensory_erev)?.sum(1)?;
        let den_s = sa.sum(1)?;
        let cm = self.p(&self.cm)?;
        // cm_t = P(cm) · L / Δt, per sample when Δt is given.
        let cm_t = match dt {
            Some(dt) => {
                cm.broadcast_mul(&dt.unsqueeze(1)?.recip()?.affine(self.unfolds as f64, 0.0)?)?
            }
            None => cm.affine(self.unfolds as f64, 0.0)?.unsqueeze(0)?,
        };
        let w = (self.p(&self.w)? * &self.mask)?;
        let gleak = self.p(&self.gleak)?;
        let leak = (&gleak * &self.vleak)?;
        let den_const = cm_t
            .broadcast_add(&gleak)?
            .broadcast_add(&den_s)?
            .affine(1.0, self.epsilon)?;
        let num_const = num_s.broadcast_add(&leak)?;
        let mut v = state.h.clone();
        for _ in 0..self.unfolds {
            let a = Self::synapses(&v, &w, &self.mu, &self.sigma)?; // (B, H, H)
            let num = (cm_t.broadcast_mul(&v)? + a.broadcast_mul(&self.erev)?.sum(1)?)?
                .add(&num_const)?;
            let den = (a.sum(1)? + &den_const)?;
            v = (num / den)?;
        }
        Ok(CellState { h: v, c: None })
    }

    fn output(&self, state: &CellState) -> Result<Tensor> {
        let mut y = if self.motor < self.units {
            state.h.narrow(D::Minus1, 0, self.motor)?
        } else {
            state.h.clone()
        };
        if let Some(w) = &self.output_w {
            y = y.broadcast_mul(w)?;
        }
        if let Some(b) = &self.output_b {
            y = y.broadcast_add(b)?;
        }
        Ok(y)
    }

    fn forward_sequence(
        &self,
        x: &Tensor,
        dt: Option<&Tensor>,
        state: &CellState,
        route: Route,
    ) -> Result<Option<(Tensor, CellState)>> {
        let threads = match route {
            Route::CpuFused { threads } => threads,
            Route::CudaSteps => return self.device_sequence(x, dt, state).map(Some),
            Route::Reference => return Ok(None),
        };
        let (_, steps, _) = x.dims3()?;
        let op = Fused::new(
            LtcKernel {
                layout: PackedLayout {
                    h: self.units,
                    d: self.inputs,
                },
                unfolds: self.unfolds,
                epsilon: self.epsilon,
                dt: dt
                    .map(|d| d.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>())
                    .transpose()?,
                synapses: self.synapses.clone(),
                sensory_synapses: self.sensory_synapses.clone(),
            },
            threads,
        );
        let xin = self.map_inputs(x)?.contiguous()?;
        let (v, _) = op.apply(&xin, &self.packed()?, &state.h)?; // (B, T, H)
        let last = v.narrow(1, steps - 1, 1)?.squeeze(1)?;
        let last = CellState { h: last, c: None };
        Ok(Some((self.output(&CellState { h: v, c: None })?, last)))
    }

    fn nonnegative_parameters(&self) -> Vec<String> {
        if self.softplus {
            Vec::new()
        } else {
            self.nonnegative.clone()
        }
    }
}

/// Offsets of the packed parameter vector that both kernel paths (CPU and CUDA) read: sigma, mu,
/// w, erev (H×H each), sensory sigma, mu, w, erev (D×H each), cm, gleak, vleak (H each).
#[derive(Debug, Clone, Copy)]
pub struct PackedLayout {
    pub h: usize,
    pub d: usize,
}

impl PackedLayout {
    pub fn len(&self) -> usize {
        4 * self.h * self.h + 4 * self.d * self.h + 3 * self.h
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! ODE-RNN (Rubanova, Chen & Duvenaud 2019): between observations the state follows an
//! autonomous ODE `dh/dt = f_θ(h)` (an MLP that sees no input), solved over the elapsed time;
//! at each observation a GRU cell updates it: `h' = ODESolve(f_θ, h, Δt)`, `h = GRU(x, h')`.
//!
//! Names for layer k: the GRU's PyTorch names (`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`,
//! `bias_hh_l{k}`, gates r, z, n) and the ODE network's `ode_l{k}.{0,2,…}.weight/bias`
//! (`backbone_layers` hidden layers of `backbone_units` tanh units; weights N(0, 0.1²), zero biases,
//! as in the reference code).
//!
//! With a fixed-step solver the CPU runs a layer as one fused op ([`OdeRnnKernel`]); the
//! adaptive Dormand–Prince solver always runs this reference step.
use candle_core::{Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::ctrnn::spans;
use super::gru::Gru;
use super::torch_layer::{pack, torch_layer_params};
use crate::cell::RecurrentCell;
use crate::config::CtOptions;
use crate::error::Result;
use crate::kernels::cpu::ctrnn::FixedStep;
use crate::kernels::cpu::{Fused, OdeRnnKernel};
use crate::ode::{integrate, Solver};
use crate::route::Route;
use crate::state::CellState;

pub struct OdeRnn {
    gru: Gru,
    /// The GRU's `[W_ih, W_hh, b_ih, b_hh]` (the same variables), for the fused kernel.
    gru_params: [Tensor; 4],
    ode: Vec<Linear>,
    solver: Solver,
    unfolds: usize,
    units: usize,
    inputs: usize,
    backbone_layers: usize,
    backbone_units: usize,
}

impl OdeRnn {
    pub fn new(
        input_size: usize,
        units: usize,
        layer: usize,
        opts: &CtOptions,
        vb: VarBuilder,
    ) -> Result<Self> {
        let gru = Gru::new(input_size, units, layer, vb.clone())?;
        // The store hands back the variables the GRU just created.
        let gru_params = torch_layer_params(&vb, layer, 3, input_size, units)?;
        let vbo = vb.pp(format!("ode_l{layer}"));
        let mut ode = Vec::new();
        let mut width = units;
        let w_init = Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        for k in 0..=opts.backbone_layers {
            let out = if k == opts.backbone_layers {
                units
            } else {
                opts.backbone_units
            };
            let v = vbo.pp(2 * k);
            let w = v.get_with_hints((out, width), "weight", w_init)?;
            let b = v.get_with_hints(out, "bias", Init::Const(0.0))?;
            ode.push(Linear::new(w, Some(b)));
            width = out;
        }
        Ok(Self {
            gru,
            gru_params,
            ode,
            solver: Solver::new(opts.solver, opts.rtol, opts.atol, opts.max_steps)?,
            unfolds: opts.ode_unfolds,
            units,
            inputs: input_size,
            backbone_layers: opts.backbone_layers,
            backbone_units: opts.backbone_units,
        })
    }

    fn field(&self, h: &Tensor) -> Result<Tensor> {
        let mut z = h.clone();
        for (k, l) in self.ode.iter().enumerate() {
            z = l.forward(&z)?;
            if k + 1 < self.ode.len() {
                z = z.tanh()?;
            }
        }
        Ok(z)
    }
}

impl RecurrentCell for OdeRnn {
    fn input_size(&self) -> usize {
        self.gru.input_size()
    }
    fn hidden_size(&self) -> usize {
        self.units
    }
    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let f = |_: &Tensor, h: &Tensor| self.field(h);
        let (t0, span) = spans(dt, &state.h)?;
        let evolved = integrate(&f, &state.h, &t0, &span, self.solver, self.unfolds)?;
        self.gru.step(
            x,
            None,
            &CellState {
                h: evolved,
                c: None,
            },
        )
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
            Route::CudaSteps | Route::Reference => return Ok(None),
        };
        let Some(solver) = FixedStep::of(self.solver) else {
            return Ok(None);
        };
        let (b, steps, _) = x.dims3()?;
        // The elapsed times as one more input column: their gradient comes back through it.
        let input = match dt {
            Some(d) => {
                let d = d.reshape((b, steps, 1))?.to_dtype(x.dtype())?;
                Tensor::cat(&[x, &d], 2)?
            }
            None => x.clone(),
        };
        let kernel = OdeRnnKernel {
            input: self.inputs,
            hidden: self.units,
            backbone_layers: self.backbone_layers,
            backbone_units: self.backbone_units,
            solver,
            unfolds: self.unfolds,
            with_dt: dt.is_some(),
        };
        let mut parts: Vec<&Tensor> = self.gru_params.iter().collect();
        let biases: Vec<Tensor> = self
            .ode
            .iter()
            .map(|l| l.bias().expect("ODE layers have biases").clone())
            .collect();
        for (l, bias) in self.ode.iter().zip(&biases) {
            parts.push(l.weight());
            parts.push(bias);
        }
        let w = pack(&parts)?;
        let (hs, _) = Fused::new(kernel, threads).apply(&input, &w, &state.h)?;
        let h_n = hs.narrow(1, steps - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}

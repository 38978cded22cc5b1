//! One layer of a cell in plain f64 Rust, for probes that run millions of short sequences
//! (the distinguishability heatmap): no tensors, no graph, one state at a time, so many weight
//! draws run side by side on plain threads.
//!
//! [`PlainCell::from_tensors`] reads the parameters of a one-layer model under the crates/cells
//! names (`rnn.weight_hh_l0`, `rnn.rnn_cell.w`, …) and [`PlainCell::step`] repeats the cell's
//! reference step (crates/cells/src/cells/*.rs, elapsed time 1) in the same order of operations:
//! - SRN `h' = act((x W_ihᵀ + b_ih) + (h W_hhᵀ + b_hh))`, act tanh or logistic;
//! - LSTM (gates i, f, g, o), GRU (r, z, n with `b_hn` inside `r ⊙ ·`), PyTorch's semantics;
//! - CT-RNN `dh/dt = tanh(x W_ihᵀ + b + h W_hhᵀ) − h/τ`, τ = softplus(tau), over Δt = 1 by
//!   Euler, Heun, RK4 (`ode_unfolds` equal steps) or Dormand–Prince 5(4) (the cells' controller,
//!   first step 1/unfolds, `rtol`, `atol`, `max_steps`);
//! - LTC (ncps's semi-implicit Euler, `ode_unfolds` unfolds, softplus or clip constraint, the
//!   affine/linear/no input mapping, the wiring's masks and reversal potentials);
//! - CfC (backbone of LeCun tanh, tanh, ReLU or SiLU; default, no-gate and pure modes).
//!
//! The tests check every cell against the Candle model step by step to 1e-10. Not here: the
//! ODE-RNN (no need so far) and the GELU backbone (f64 erf is not in the standard library).
use candle_core::{DType, Tensor};
use remanence_cells::{
    BackboneActivation, CellKind, CfcMode, Constraint, Mapping, RnnConfig, SolverKind,
};

use crate::error::{invalid, ProbeError, Result};

/// The state of one sequence: `h`, and `c` for the LSTM (empty for the other cells).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainState {
    pub h: Vec<f64>,
    pub c: Vec<f64>,
}

/// A dense layer `y = W x + b`, W row-major (out × in).
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f64>,
    b: Vec<f64>,
    inputs: usize,
}

impl Dense {
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for (r, y) in y.iter_mut().enumerate() {
            *y = dot(&self.w[r * self.inputs..(r + 1) * self.inputs], x) + self.b[r];
        }
    }
}

/// Σ a_i b_i with four running sums (the compiler vectorises it).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

#[inline]
fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// softplus as crates/cells computes it (x itself above 20).
fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

#[derive(Debug, Clone, Copy)]
enum CtSolver {
    Euler,
    Heun,
    Rk4,
    Dopri5 {
        rtol: f64,
        atol: f64,
        max_steps: usize,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Srn {
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        b_ih: Vec<f64>,
        b_hh: Vec<f64>,
        logistic: bool,
    },
    Lstm {
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        b_ih: Vec<f64>,
        b_hh: Vec<f64>,
    },
    Gru {
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        b_ih: Vec<f64>,
        b_hh: Vec<f64>,
    },
    Ctrnn {
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        bias: Vec<f64>,
        inv_tau: Vec<f64>,
        solver: CtSolver,
        unfolds: usize,
    },
    Esn {
        w_ih: Vec<f64>,
        w_hh: Vec<f64>,
        bias: Vec<f64>,
        leak: f64,
    },
    Ltc(Box<LtcParams>),
    Cfc(Box<CfcParams>),
}

#[derive(Debug, Clone)]
struct LtcParams {
    /// Effective (constrained, masked) values; matrices row-major [source][destination].
    w: Vec<f64>,
    sigma: Vec<f64>,
    mu: Vec<f64>,
    erev: Vec<f64>,
    sensory_w: Vec<f64>,
    sensory_sigma: Vec<f64>,
    sensory_mu: Vec<f64>,
    sensory_erev: Vec<f64>,
    /// P(cm) · unfolds (Δt = 1).
    cm_t: Vec<f64>,
    gleak: Vec<f64>,
    leak: Vec<f64>,
    input_w: Option<Vec<f64>>,
    input_b: Option<Vec<f64>>,
    unfolds: usize,
    epsilon: f64,
}

#[derive(Debug, Clone)]
struct CfcParams {
    backbone: Vec<Dense>,
    activation: BackboneActivation,
    ff1: Dense,
    ff2: Option<Dense>,
    time_a: Option<Dense>,
    time_b: Option<Dense>,
    a: Vec<f64>,
    w_tau: Vec<f64>,
    mode: CfcMode,
}

/// One layer of a cell in f64 (see the module's notes).
#[derive(Debug, Clone)]
pub struct PlainCell {
    kind: Kind,
    cell: CellKind,
    inputs: usize,
    hidden: usize,
}

/// Named tensors, read in f64.
struct Params<'a> {
    tensors: &'a [(String, Tensor)],
    prefix: String,
}

impl Params<'_> {
    fn get(&self, name: &str, dims: &[usize]) -> Result<Vec<f64>> {
        let full = format!("{}{name}", self.prefix);
        let Some((_, t)) = self.tensors.iter().find(|(n, _)| *n == full) else {
            return Err(invalid(format!(
                "parameter `{full}` is missing (the parameters are {:?})",
                self.tensors
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
            )));
        };
        if t.dims() != dims {
            return Err(invalid(format!(
                "parameter `{full}` has shape {:?}, expected {dims:?}",
                t.dims()
            )));
        }
        let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(ProbeError::NonFinite(format!("parameter `{full}`")));
        }
        Ok(v)
    }

    fn has(&self, name: &str) -> bool {
        let full = format!("{}{name}", self.prefix);
        self.tensors.iter().any(|(n, _)| *n == full)
    }

    fn dense(&self, name: &str, out: usize, inp: usize) -> Result<Dense> {
        Ok(Dense {
            w: self.get(&format!("{name}.weight"), &[out, inp])?,
            b: self.get(&format!("{name}.bias"), &[out])?,
            inputs: inp,
        })
    }
}

impl PlainCell {
    /// The first (and only) layer of a model of `config` from its parameters, the recurrent
    /// ones under `prefix` (`rnn.` in a model's store). A multi-layer configuration is refused.
    pub fn from_tensors(
        config: &RnnConfig,
        tensors: &[(String, Tensor)],
        prefix: &str,
    ) -> Result<Self> {
        config.validate()?;
        if config.num_layers != 1 {
            return Err(invalid(format!(
                "the plain f64 cells run one layer, and the configuration has {}",
                config.num_layers
            )));
        }
        let (i, h) = (config.input_size, config.hidden_size);
        let torch = |gates: usize, p: &Params| -> Result<[Vec<f64>; 4]> {
            Ok([
                p.get("weight_ih_l0", &[gates * h, i])?,
                p.get("weight_hh_l0", &[gates * h, h])?,
                p.get("bias_ih_l0", &[gates * h])?,
                p.get("bias_hh_l0", &[gates * h])?,
            ])
        };
        let p = Params {
            tensors,
            prefix: prefix.to_string(),
        };
        let ct = &config.ct;
        let kind = match config.cell {
            CellKind::Srn => {
                let [w_ih, w_hh, b_ih, b_hh] = torch(1, &p)?;
                Kind::Srn {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    logistic: config.activation == remanence_cells::Activation::Sigmoid,
                }
            }
            CellKind::Lstm => {
                let [w_ih, w_hh, b_ih, b_hh] = torch(4, &p)?;
                Kind::Lstm {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                }
            }
            CellKind::Gru => {
                let [w_ih, w_hh, b_ih, b_hh] = torch(3, &p)?;
                Kind::Gru {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                }
            }
            CellKind::Ctrnn => {
                let solver = match ct.solver {
                    SolverKind::Euler => CtSolver::Euler,
                    SolverKind::Heun => CtSolver::Heun,
                    SolverKind::Rk4 => CtSolver::Rk4,
                    SolverKind::Dopri5 => {
                        if !(ct.rtol > 0.0 && ct.atol > 0.0) || ct.max_steps == 0 {
                            return Err(invalid(
                                "dopri5 needs rtol > 0, atol > 0 and max_steps ≥ 1",
                            ));
                        }
                        CtSolver::Dopri5 {
                            rtol: ct.rtol,
                            atol: ct.atol,
                            max_steps: ct.max_steps,
                        }
                    }
                };
                Kind::Ctrnn {
                    w_ih: p.get("weight_ih_l0", &[h, i])?,
                    w_hh: p.get("weight_hh_l0", &[h, h])?,
                    bias: p.get("bias_l0", &[h])?,
                    inv_tau: p
                        .get("tau_l0", &[h])?
                        .into_iter()
                        .map(|t| 1.0 / softplus(t))
                        .collect(),
                    solver,
                    unfolds: ct.ode_unfolds,
                }
            }
            CellKind::Ltc => {
                let p = Params {
                    tensors,
                    prefix: format!("{prefix}rnn_cell."),
                };
                let soft = ct.constraint == Constraint::Softplus;
                let pc = |v: Vec<f64>| -> Vec<f64> {
                    if soft {
                        v.into_iter().map(softplus).collect()
                    } else {
                        v
                    }
                };
                let times = |a: Vec<f64>, b: Vec<f64>| -> Vec<f64> {
                    a.into_iter().zip(b).map(|(x, y)| x * y).collect()
                };
                let w = times(pc(p.get("w", &[h, h])?), p.get("sparsity_mask", &[h, h])?);
                let sensory_w = times(
                    pc(p.get("sensory_w", &[i, h])?),
                    p.get("sensory_sparsity_mask", &[i, h])?,
                );
                let gleak = pc(p.get("gleak", &[h])?);
                let leak = times(gleak.clone(), p.get("vleak", &[h])?);
                let unfolds = ct.ode_unfolds;
                let cm_t = pc(p.get("cm", &[h])?)
                    .into_iter()
                    .map(|c| c * unfolds as f64)
                    .collect();
                let input_w = (ct.input_mapping != Mapping::None)
                    .then(|| p.get("input_w", &[i]))
                    .transpose()?;
                let input_b = (ct.input_mapping == Mapping::Affine)
                    .then(|| p.get("input_b", &[i]))
                    .transpose()?;
                Kind::Ltc(Box::new(LtcParams {
                    w,
                    sigma: p.get("sigma", &[h, h])?,
                    mu: p.get("mu", &[h, h])?,
                    erev: p.get("erev", &[h, h])?,
                    sensory_w,
                    sensory_sigma: p.get("sensory_sigma", &[i, h])?,
                    sensory_mu: p.get("sensory_mu", &[i, h])?,
                    sensory_erev: p.get("sensory_erev", &[i, h])?,
                    cm_t,
                    gleak,
                    leak,
                    input_w,
                    input_b,
                    unfolds,
                    epsilon: ct.epsilon,
                }))
            }
            CellKind::Cfc => {
                if ct.backbone_activation == BackboneActivation::Gelu {
                    return Err(invalid(
                        "the plain f64 CfC has no GELU backbone (f64 erf is not in the standard \
                         library); choose lecun-tanh, tanh, relu or silu",
                    ));
                }
                let p = Params {
                    tensors,
                    prefix: format!("{prefix}rnn_cell."),
                };
                let mut backbone = Vec::new();
                let mut width = i + h;
                for k in 0..ct.backbone_layers {
                    backbone.push(p.dense(
                        &format!("backbone.{}", 2 * k),
                        ct.backbone_units,
                        width,
                    )?);
                    width = ct.backbone_units;
                }
                let ff1 = p.dense("ff1", h, width)?;
                let pure = ct.mode == CfcMode::Pure;
                let heads = |name: &str| -> Result<Option<Dense>> {
                    (!pure).then(|| p.dense(name, h, width)).transpose()
                };
                let (a, w_tau) = if pure {
                    (p.get("A", &[1, h])?, p.get("w_tau", &[1, h])?)
                } else {
                    (Vec::new(), Vec::new())
                };
                if !pure && (p.has("A") || p.has("w_tau")) {
                    return Err(invalid("CfC parameters `A`/`w_tau` outside the pure mode"));
                }
                Kind::Cfc(Box::new(CfcParams {
                    backbone,
                    activation: ct.backbone_activation,
                    ff1,
                    ff2: heads("ff2")?,
                    time_a: heads("time_a")?,
                    time_b: heads("time_b")?,
                    a,
                    w_tau,
                    mode: ct.mode,
                }))
            }
            CellKind::Esn => Kind::Esn {
                w_ih: p.get("weight_ih_l0", &[h, i])?,
                w_hh: p.get("weight_hh_l0", &[h, h])?,
                bias: p.get("bias_l0", &[h])?,
                leak: config.reservoir.leak_rate,
            },
            CellKind::Odernn => {
                return Err(invalid(
                    "the plain f64 cells do not include the ODE-RNN; probe a trained one with \
                     --run (the model's own step)",
                ))
            }
        };
        Ok(Self {
            kind,
            cell: config.cell,
            inputs: i,
            hidden: h,
        })
    }

    pub fn cell(&self) -> CellKind {
        self.cell
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn input_size(&self) -> usize {
        self.inputs
    }

    /// The all-zero state (the models' initial state).
    pub fn zero_state(&self) -> PlainState {
        PlainState {
            h: vec![0.0; self.hidden],
            c: if self.cell == CellKind::Lstm {
                vec![0.0; self.hidden]
            } else {
                Vec::new()
            },
        }
    }

    /// One step of the cell on input `x` (`input_size` values), in place.
    pub fn step(&self, x: &[f64], s: &mut PlainState) -> Result<()> {
        if x.len() != self.inputs {
            return Err(invalid(format!(
                "an input of {} values for a cell that reads {}",
                x.len(),
                self.inputs
            )));
        }
        let h = self.hidden;
        let ni = self.inputs;
        // x W_ihᵀ row r.
        let xin = |w: &[f64], r: usize| -> f64 { dot(&w[r * ni..(r + 1) * ni], x) };
        match &self.kind {
            Kind::Srn {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
                logistic: lg,
            } => {
                let next: Vec<f64> = (0..h)
                    .map(|r| {
                        let pre = (xin(w_ih, r) + b_ih[r])
                            + (dot(&w_hh[r * h..(r + 1) * h], &s.h) + b_hh[r]);
                        if *lg {
                            logistic(pre)
                        } else {
                            pre.tanh()
                        }
                    })
                    .collect();
                s.h = next;
            }
            Kind::Esn {
                w_ih,
                w_hh,
                bias,
                leak,
            } => {
                let next: Vec<f64> = (0..h)
                    .map(|r| {
                        let pre = xin(w_ih, r) + dot(&w_hh[r * h..(r + 1) * h], &s.h) + bias[r];
                        (1.0 - leak) * s.h[r] + leak * pre.tanh()
                    })
                    .collect();
                s.h = next;
            }
            Kind::Lstm {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            } => {
                let g: Vec<f64> = (0..4 * h)
                    .map(|r| {
                        (xin(w_ih, r) + b_ih[r]) + (dot(&w_hh[r * h..(r + 1) * h], &s.h) + b_hh[r])
                    })
                    .collect();
                for j in 0..h {
                    let i = logistic(g[j]);
                    let f = logistic(g[h + j]);
                    let gg = g[2 * h + j].tanh();
                    let o = logistic(g[3 * h + j]);
                    let c = f * s.c[j] + i * gg;
                    s.c[j] = c;
                    s.h[j] = o * c.tanh();
                }
            }
            Kind::Gru {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            } => {
                let gx: Vec<f64> = (0..3 * h).map(|r| xin(w_ih, r) + b_ih[r]).collect();
                let gh: Vec<f64> = (0..3 * h)
                    .map(|r| dot(&w_hh[r * h..(r + 1) * h], &s.h) + b_hh[r])
                    .collect();
                let next: Vec<f64> = (0..h)
                    .map(|j| {
                        let r = logistic(gx[j] + gh[j]);
                        let z = logistic(gx[h + j] + gh[h + j]);
                        let n = (gx[2 * h + j] + r * gh[2 * h + j]).tanh();
                        n + z * (s.h[j] - n)
                    })
                    .collect();
                s.h = next;
            }
            Kind::Ctrnn {
                w_ih,
                w_hh,
                bias,
                inv_tau,
                solver,
                unfolds,
            } => {
                let drive: Vec<f64> = (0..h).map(|r| xin(w_ih, r) + bias[r]).collect();
                let f = |y: &[f64], out: &mut [f64]| {
                    for r in 0..h {
                        let act = (drive[r] + dot(&w_hh[r * h..(r + 1) * h], y)).tanh();
                        out[r] = act - y[r] * inv_tau[r];
                    }
                };
                s.h = ct_integrate(&f, &s.h, *solver, *unfolds)?;
            }
            Kind::Ltc(p) => s.h = ltc_step(p, x, &s.h),
            Kind::Cfc(p) => s.h = cfc_step(p, x, &s.h),
        }
        Ok(())
    }
}

/// The CT-RNN's solve over Δt = 1 (the Candle solvers' order of operations).
fn ct_integrate(
    f: &dyn Fn(&[f64], &mut [f64]),
    y0: &[f64],
    solver: CtSolver,
    unfolds: usize,
) -> Result<Vec<f64>> {
    let n = y0.len();
    let axpy = |y: &[f64], k: &[f64], a: f64| -> Vec<f64> {
        y.iter().zip(k).map(|(y, k)| y + k * a).collect()
    };
    let h = 1.0 / unfolds as f64;
    let half = h * 0.5;
    let mut y = y0.to_vec();
    let (mut k1, mut k2, mut k3, mut k4) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    match solver {
        CtSolver::Dopri5 {
            rtol,
            atol,
            max_steps,
        } => return dopri5_unit(f, y0, rtol, atol, max_steps, unfolds),
        CtSolver::Euler => {
            for _ in 0..unfolds {
                f(&y, &mut k1);
                y = axpy(&y, &k1, h);
            }
        }
        CtSolver::Heun => {
            for _ in 0..unfolds {
                f(&y, &mut k1);
                f(&axpy(&y, &k1, h), &mut k2);
                y = y
                    .iter()
                    .zip(k1.iter().zip(&k2))
                    .map(|(y, (a, b))| y + (a + b) * half)
                    .collect();
            }
        }
        CtSolver::Rk4 => {
            for _ in 0..unfolds {
                f(&y, &mut k1);
                f(&axpy(&y, &k1, half), &mut k2);
                f(&axpy(&y, &k2, half), &mut k3);
                f(&axpy(&y, &k3, h), &mut k4);
                y = (0..n)
                    .map(|r| {
                        let sum = k1[r] + k4[r] + (k2[r] + k3[r]) * 2.0;
                        y[r] + sum * h * (1.0 / 6.0)
                    })
                    .collect();
            }
        }
    }
    Ok(y)
}

/// Dormand–Prince tableau (the same numbers as crates/cells/src/ode/solvers.rs).
pub(crate) mod tableau {
    pub const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
    pub const A: [&[f64]; 6] = [
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
        ],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ];
    /// Fifth-order weights minus the embedded fourth-order ones.
    pub const E: [f64; 7] = [
        35.0 / 384.0 - 5179.0 / 57600.0,
        0.0,
        500.0 / 1113.0 - 7571.0 / 16695.0,
        125.0 / 192.0 - 393.0 / 640.0,
        -2187.0 / 6784.0 + 92097.0 / 339200.0,
        11.0 / 84.0 - 187.0 / 2100.0,
        -1.0 / 40.0,
    ];
}

/// The cells' adaptive Dormand–Prince over one input step of length 1 for one sample: first
/// step 1/unfolds, error norm the RMS of err/(atol + rtol·max(|y|, |y5|)), factor
/// 0.9·norm^(−1/5) clamped to [0.2, 10], at most `max_steps` attempts.
fn dopri5_unit(
    f: &dyn Fn(&[f64], &mut [f64]),
    y0: &[f64],
    rtol: f64,
    atol: f64,
    max_steps: usize,
    unfolds: usize,
) -> Result<Vec<f64>> {
    use tableau::{A, E};
    let n = y0.len();
    let total = 1.0f64;
    let mut done = 0.0f64;
    let mut h = total / unfolds as f64;
    let mut y = y0.to_vec();
    let finished = |done: f64| (total - done).abs() <= 1e-12 * total;
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; n]; 7];
    for _ in 0..max_steps {
        if finished(done) {
            return Ok(y);
        }
        let hs = h.min(total - done);
        f(&y, &mut k[0]);
        let mut y5 = Vec::new();
        for s in 0..6 {
            let mut acc = y.clone();
            for (j, a) in A[s].iter().enumerate() {
                if *a != 0.0 {
                    for r in 0..n {
                        acc[r] += k[j][r] * hs * a;
                    }
                }
            }
            f(&acc, &mut k[s + 1]);
            if s == 5 {
                y5 = acc;
            }
        }
        let mut sum = 0.0;
        for r in 0..n {
            let mut err = k[0][r] * E[0];
            for (j, e) in E.iter().enumerate().skip(1) {
                if *e != 0.0 {
                    err += k[j][r] * e;
                }
            }
            let err = err * hs;
            let scale = y[r].abs().max(y5[r].abs()) * rtol + atol;
            sum += (err / scale).powi(2);
        }
        let norm = (sum / n as f64).sqrt();
        if norm <= 1.0 {
            y = y5;
            done += hs;
        }
        let factor = if norm == 0.0 {
            10.0
        } else {
            (0.9 * norm.powf(-0.2)).clamp(0.2, 10.0)
        };
        if !norm.is_finite() {
            return Err(ProbeError::Solver(format!(
                "dopri5: the state became non-finite at t = {done:.6} (step {hs:.3e})"
            )));
        }
        h = hs * factor;
        if h < 1e-10 * total {
            return Err(ProbeError::Solver(format!(
                "dopri5: stalled at t = {done:.6} of 1: step {h:.3e} cannot meet rtol {rtol}, \
                 atol {atol}"
            )));
        }
    }
    if finished(done) {
        return Ok(y);
    }
    Err(ProbeError::Solver(format!(
        "dopri5: {max_steps} steps were not enough ({done:.6} of 1 done, step {h:.3e}); raise \
         max_steps or loosen rtol/atol"
    )))
}

fn ltc_step(p: &LtcParams, x: &[f64], v0: &[f64]) -> Vec<f64> {
    let h = v0.len();
    let d = x.len();
    let xm: Vec<f64> = (0..d)
        .map(|k| {
            let mut v = x[k];
            if let Some(w) = &p.input_w {
                v *= w[k];
            }
            if let Some(b) = &p.input_b {
                v += b[k];
            }
            v
        })
        .collect();
    let mut num_const = vec![0.0; h];
    let mut den_s = vec![0.0; h];
    for j in 0..h {
        let (mut num, mut den) = (0.0, 0.0);
        for k in 0..d {
            let idx = k * h + j;
            let a = logistic((xm[k] - p.sensory_mu[idx]) * p.sensory_sigma[idx]) * p.sensory_w[idx];
            num += a * p.sensory_erev[idx];
            den += a;
        }
        num_const[j] = num + p.leak[j];
        den_s[j] = den;
    }
    let den_const: Vec<f64> = (0..h)
        .map(|j| ((p.cm_t[j] + p.gleak[j]) + den_s[j]) + p.epsilon)
        .collect();
    let mut v = v0.to_vec();
    let mut num = vec![0.0; h];
    let mut den = vec![0.0; h];
    for _ in 0..p.unfolds {
        num.iter_mut().for_each(|x| *x = 0.0);
        den.iter_mut().for_each(|x| *x = 0.0);
        for (i, &vi) in v.iter().enumerate() {
            let row = i * h;
            for j in 0..h {
                let idx = row + j;
                let a = logistic((vi - p.mu[idx]) * p.sigma[idx]) * p.w[idx];
                num[j] += a * p.erev[idx];
                den[j] += a;
            }
        }
        for j in 0..h {
            let nj = (p.cm_t[j] * v[j] + num[j]) + num_const[j];
            let dj = den[j] + den_const[j];
            num[j] = nj / dj;
        }
        std::mem::swap(&mut v, &mut num);
    }
    v
}

fn backbone_act(a: BackboneActivation, x: f64) -> f64 {
    match a {
        BackboneActivation::LecunTanh => (x * 0.666).tanh() * 1.7159,
        BackboneActivation::Tanh => x.tanh(),
        BackboneActivation::Relu => x.max(0.0),
        BackboneActivation::Silu => x / (1.0 + (-x).exp()),
        // Refused in `from_tensors`.
        BackboneActivation::Gelu => f64::NAN,
    }
}

fn cfc_step(p: &CfcParams, x: &[f64], h0: &[f64]) -> Vec<f64> {
    let h = h0.len();
    let mut z: Vec<f64> = x.iter().chain(h0).copied().collect();
    for l in &p.backbone {
        let mut out = vec![0.0; l.b.len()];
        l.apply(&z, &mut out);
        out.iter_mut()
            .for_each(|v| *v = backbone_act(p.activation, *v));
        z = out;
    }
    let mut ff1 = vec![0.0; h];
    p.ff1.apply(&z, &mut ff1);
    if p.mode == CfcMode::Pure {
        return (0..h)
            .map(|j| {
                let rate = ff1[j].abs() + p.w_tau[j].abs();
                -((-rate).exp() * ff1[j] * p.a[j]) + p.a[j]
            })
            .collect();
    }
    let (mut ff2, mut ta, mut tb) = (vec![0.0; h], vec![0.0; h], vec![0.0; h]);
    // Present outside the pure mode (checked in `from_tensors`).
    let heads = [&p.ff2, &p.time_a, &p.time_b];
    for (d, out) in heads.into_iter().zip([&mut ff2, &mut ta, &mut tb]) {
        if let Some(d) = d {
            d.apply(&z, out);
        }
    }
    (0..h)
        .map(|j| {
            let f1 = ff1[j].tanh();
            let f2 = ff2[j].tanh();
            let gate = logistic(ta[j] + tb[j]);
            if p.mode == CfcMode::NoGate {
                f1 + gate * f2
            } else {
                (f1 - f1 * gate) + gate * f2
            }
        })
        .collect()
}

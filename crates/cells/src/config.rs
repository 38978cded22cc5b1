use serde::{Deserialize, Serialize};

use crate::error::{CellError, Result};

/// The kinds of recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    /// Elman simple recurrent network (`torch.nn.RNN`).
    Srn,
    /// Long short-term memory (`torch.nn.LSTM`, gates i, f, g, o).
    Lstm,
    /// Gated recurrent unit (`torch.nn.GRU`, gates r, z, n).
    Gru,
    /// Liquid time-constant network (ncps `LTC`).
    Ltc,
    /// Closed-form continuous-time network (ncps `CfC`).
    Cfc,
    /// Continuous-time RNN, dh/dt = −h/τ + tanh(W[x, h] + b).
    Ctrnn,
    /// ODE-RNN (Rubanova et al. 2019): an MLP ODE between observations, a GRU update at each.
    Odernn,
}

impl CellKind {
    pub const ALL: [CellKind; 7] = [
        CellKind::Srn,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::Ltc,
        CellKind::Cfc,
        CellKind::Ctrnn,
        CellKind::Odernn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Srn => "srn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::Ltc => "ltc",
            CellKind::Cfc => "cfc",
            CellKind::Ctrnn => "ctrnn",
            CellKind::Odernn => "odernn",
        }
    }

    /// Rows of `weight_ih` per hidden unit (number of gates) of the PyTorch cells.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru | CellKind::Odernn => 3,
            _ => 1,
        }
    }

    /// Cells with a fused CPU sequence kernel (the others run their reference composition).
    pub fn has_fused_cpu(self) -> bool {
        matches!(
            self,
            CellKind::Srn | CellKind::Lstm | CellKind::Gru | CellKind::Ltc
        )
    }

    /// Cells that follow ncps's layout: one layer, parameters under `rnn_cell.`.
    pub fn is_ncps(self) -> bool {
        matches!(self, CellKind::Ltc | CellKind::Cfc)
    }
}

impl std::str::FromStr for CellKind {
    type Err = CellError;
    fn from_str(s: &str) -> Result<Self> {
        CellKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = CellKind::ALL.iter().map(|k| k.name()).collect();
                CellError::Config(format!(
                    "unknown cell `{s}`; valid cells: {}",
                    valid.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Non-linearity of the Elman SRN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Tanh,
    /// The logistic function 1/(1+e^-x), as in Elman (1990).
    Sigmoid,
}

impl std::str::FromStr for Activation {
    type Err = CellError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Activation::Tanh),
            "sigmoid" | "logistic" => Ok(Activation::Sigmoid),
            _ => Err(CellError::Config(format!(
                "unknown activation `{s}`; valid activations: tanh, sigmoid"
            ))),
        }
    }
}

/// Configuration of a recurrent network (a stack of layers of one cell kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    pub cell: CellKind,
    pub input_size: usize,
    pub hidden_size: usize,
    #[serde(default = "one")]
    pub num_layers: usize,
    /// SRN only.
    #[serde(default)]
    pub activation: Activation,
    /// Settings of the continuous-time cells.
    #[serde(default)]
    pub ct: CtOptions,
    /// Which implementation runs the sequence.
    #[serde(default)]
    pub kernel: Kernel,
}

/// Fused sequence kernel or reference composition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kernel {
    /// The fused kernel for every cell that has one (SRN, LSTM, GRU, LTC: measured faster than
    /// the reference on the CPU, `docs/benchmarks.md`), the reference composition for the others
    /// and wherever the kernel cannot run (a GPU device).
    #[default]
    Auto,
    /// The fused sequence kernel where the cell has one.
    Fused,
    /// The plain composition of Candle ops, step by step (the reference every kernel is tested
    /// against).
    Reference,
}

impl Kernel {
    /// Whether `cell` runs fused under this choice.
    pub fn fused_for(self, cell: CellKind) -> bool {
        match self {
            Kernel::Auto => matches!(
                cell,
                CellKind::Srn | CellKind::Lstm | CellKind::Gru | CellKind::Ltc
            ),
            Kernel::Fused => true,
            Kernel::Reference => false,
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = CellError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Kernel::Auto),
            "fused" => Ok(Kernel::Fused),
            "reference" => Ok(Kernel::Reference),
            _ => Err(CellError::Config(format!(
                "unknown kernel `{s}`; valid kernels: auto, fused, reference"
            ))),
        }
    }
}

/// Settings of the continuous-time cells (ignored by the others). Defaults are ncps's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CtOptions {
    /// LTC wiring (see [`crate::wiring::WiringSpec`]).
    pub wiring: String,
    /// Seed of the generated wiring.
    pub wiring_seed: u64,
    /// Solver steps per input step (LTC, CT-RNN, ODE-RNN).
    pub ode_unfolds: usize,
    /// CT-RNN / ODE-RNN solver: euler, heun, rk4, dopri5.
    pub solver: String,
    /// Adaptive solver tolerances and step budget per input step.
    pub rtol: f64,
    pub atol: f64,
    pub max_steps: usize,
    /// LTC: `softplus` (constraints at use time) or `clip` (raw parameters, clamped ≥ 0 after each update).
    pub constraint: String,
    /// LTC input and output mappings: affine, linear, none.
    pub input_mapping: String,
    pub output_mapping: String,
    /// LTC denominator epsilon.
    pub epsilon: f64,
    /// CfC mode: default, no-gate, pure.
    pub mode: String,
    /// CfC backbone (and ODE-RNN's ODE network) width, depth and activation.
    pub backbone_units: usize,
    pub backbone_layers: usize,
    pub backbone_activation: String,
}

impl Default for CtOptions {
    fn default() -> Self {
        Self {
            wiring: "fully-connected".into(),
            wiring_seed: 0,
            ode_unfolds: 6,
            solver: "euler".into(),
            rtol: 1e-3,
            atol: 1e-4,
            max_steps: 1000,
            constraint: "softplus".into(),
            input_mapping: "affine".into(),
            output_mapping: "affine".into(),
            epsilon: 1e-8,
            mode: "default".into(),
            backbone_units: 128,
            backbone_layers: 1,
            backbone_activation: "lecun-tanh".into(),
        }
    }
}

fn one() -> usize {
    1
}

impl RnnConfig {
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return Err(CellError::Config(format!(
                "input_size, hidden_size and num_layers must be positive (got {}, {}, {})",
                self.input_size, self.hidden_size, self.num_layers
            )));
        }
        if self.cell.is_ncps() && self.num_layers != 1 {
            return Err(CellError::Config(format!(
                "{} has one layer (its wiring gives the structure); got num_layers = {}",
                self.cell, self.num_layers
            )));
        }
        if self.ct.ode_unfolds == 0 {
            return Err(CellError::Config("ode_unfolds must be at least 1".into()));
        }
        Ok(())
    }
}

/// A recurrent network with a linear read-out applied at every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub rnn: RnnConfig,
    pub output_size: usize,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        self.rnn.validate()?;
        if self.output_size == 0 {
            return Err(CellError::Config("output_size must be positive".into()));
        }
        Ok(())
    }
}

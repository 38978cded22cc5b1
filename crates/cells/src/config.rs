use serde::{Deserialize, Serialize};

use crate::encoder::EncoderConfig;
use crate::error::{CellError, Result};
use crate::wiring::WiringSpec;

/// An enum of named choices: serde and `FromStr` use the names (and accept the aliases), and an
/// unknown name gets an error that lists the valid ones.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text $(, alias = $alias)*)] $variant ),*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl std::str::FromStr for $name {
            type Err = CellError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text $(| $alias)* => Ok($name::$variant),)*
                    _ => Err(CellError::Config(format!(
                        concat!("unknown ", $what, " `{}`; valid: {}"),
                        s,
                        [$($text),*].join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

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
    /// Echo-state reservoir (Jaeger 2001), leaky: h' = (1 − a)h + a·tanh(W_in x + W h + b), with
    /// a sparse random W scaled to a spectral radius; its read-out is fitted by ridge regression.
    Esn,
}

impl CellKind {
    pub const ALL: [CellKind; 8] = [
        CellKind::Srn,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::Ltc,
        CellKind::Cfc,
        CellKind::Ctrnn,
        CellKind::Odernn,
        CellKind::Esn,
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
            CellKind::Esn => "esn",
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
            CellKind::Srn
                | CellKind::Lstm
                | CellKind::Gru
                | CellKind::Ltc
                | CellKind::Esn
                | CellKind::Cfc
                | CellKind::Ctrnn
                | CellKind::Odernn
        )
    }

    /// Cells with CUDA step kernels (the others run their reference composition on a GPU).
    pub fn has_cuda_kernels(self) -> bool {
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

named_enum! {
    /// Non-linearity of the Elman SRN.
    Activation "activation" {
        #[default]
        Tanh = "tanh",
        /// The logistic function 1/(1+e^-x), as in Elman (1990).
        Sigmoid = "sigmoid" | "logistic",
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
    /// Settings of the echo-state reservoir.
    #[serde(default, skip_serializing_if = "ReservoirOptions::is_default")]
    pub reservoir: ReservoirOptions,
    /// Which implementation runs the sequence (decided by [`crate::Route::select`]).
    #[serde(default)]
    pub kernel: Kernel,
    /// Threads of the fused CPU kernels; `None`: every core. A property of the machine running
    /// the model, not of the model, so it is not stored in run folders.
    #[serde(skip)]
    pub threads: Option<usize>,
}

named_enum! {
    /// Fused sequence kernel or reference composition.
    Kernel "kernel" {
        /// The fused kernel for every cell that has one (SRN, LSTM, GRU, LTC: measured faster
        /// than the reference on the CPU, `docs/benchmarks.md`), the reference composition for
        /// the others.
        #[default]
        Auto = "auto",
        /// The fused sequence kernel where the cell has one (today the same choice as `auto`).
        Fused = "fused",
        /// The plain composition of Candle ops, step by step (the reference every kernel is
        /// tested against).
        Reference = "reference",
    }
}

named_enum! {
    /// Solver of the CT-RNN and ODE-RNN.
    SolverKind "solver" {
        /// Explicit Euler (order 1).
        #[default]
        Euler = "euler",
        /// Heun's method (order 2).
        Heun = "heun",
        /// Classic fourth-order Runge–Kutta.
        Rk4 = "rk4",
        /// Dormand–Prince 5(4), adaptive (`rtol`, `atol`, `max_steps`).
        Dopri5 = "dopri5",
    }
}

named_enum! {
    /// How the LTC keeps `w`, `sensory_w`, `cm` and `gleak` non-negative.
    Constraint "constraint" {
        /// softplus at use time (ncps's `LTC` default).
        #[default]
        Softplus = "softplus",
        /// Raw values, clamped to ≥ 0 after every update.
        Clip = "clip",
    }
}

named_enum! {
    /// The LTC's input and output mappings.
    Mapping "mapping" {
        /// A per-feature scale and shift.
        #[default]
        Affine = "affine",
        /// A per-feature scale.
        Linear = "linear",
        /// The identity.
        None = "none",
    }
}

named_enum! {
    /// CfC variant.
    CfcMode "CfC mode" {
        /// Gated interpolation between two heads by a learned time constant.
        #[default]
        Default = "default",
        /// Without the gate's complement.
        NoGate = "no-gate" | "no_gate",
        /// The closed-form solution alone.
        Pure = "pure",
    }
}

named_enum! {
    /// Activation of the CfC backbone.
    BackboneActivation "backbone activation" {
        /// 1.7159·tanh(0.666·x).
        #[default]
        LecunTanh = "lecun-tanh" | "lecun_tanh",
        Tanh = "tanh",
        Relu = "relu",
        Gelu = "gelu",
        Silu = "silu",
    }
}

/// Settings of the continuous-time cells (ignored by the others). Defaults are ncps's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CtOptions {
    /// LTC wiring (see [`crate::wiring::WiringSpec`]).
    pub wiring: WiringSpec,
    /// Seed of the generated wiring.
    pub wiring_seed: u64,
    /// Solver steps per input step (LTC, CT-RNN, ODE-RNN).
    pub ode_unfolds: usize,
    /// CT-RNN / ODE-RNN solver.
    pub solver: SolverKind,
    /// Adaptive solver tolerances and step budget per input step.
    pub rtol: f64,
    pub atol: f64,
    pub max_steps: usize,
    /// LTC: softplus at use time or clipped after each update.
    pub constraint: Constraint,
    /// LTC input and output mappings.
    pub input_mapping: Mapping,
    pub output_mapping: Mapping,
    /// LTC denominator epsilon.
    pub epsilon: f64,
    /// CfC mode.
    pub mode: CfcMode,
    /// CfC backbone (and ODE-RNN's ODE network) width, depth and activation.
    pub backbone_units: usize,
    pub backbone_layers: usize,
    pub backbone_activation: BackboneActivation,
}

impl Default for CtOptions {
    fn default() -> Self {
        Self {
            wiring: WiringSpec::FullyConnected { output_dim: None },
            wiring_seed: 0,
            ode_unfolds: 6,
            solver: SolverKind::Euler,
            rtol: 1e-3,
            atol: 1e-4,
            max_steps: 1000,
            constraint: Constraint::Softplus,
            input_mapping: Mapping::Affine,
            output_mapping: Mapping::Affine,
            epsilon: 1e-8,
            mode: CfcMode::Default,
            backbone_units: 128,
            backbone_layers: 1,
            backbone_activation: BackboneActivation::LecunTanh,
        }
    }
}

/// Settings of the echo-state reservoir (ignored by the other cells). The defaults are
/// ReservoirPy's `Reservoir` node (v0.4.2): `sr = 1`, `lr = 1`, `input_scaling = 1`,
/// `rc_connectivity = input_connectivity = 0.1`, no bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReservoirOptions {
    /// Spectral radius ρ(W) the recurrent matrix is scaled to.
    pub spectral_radius: f64,
    /// Leak rate a ∈ (0, 1]: h' = (1 − a)h + a·tanh(…); 1 is the plain (non-leaky) reservoir.
    pub leak_rate: f64,
    /// Scale of the input weights (±1 before scaling).
    pub input_scaling: f64,
    /// Share of the H·H recurrent weights that are non-zero (N(0, 1) before scaling).
    pub connectivity: f64,
    /// Share of the H·I input weights that are non-zero.
    pub input_connectivity: f64,
    /// Scale of the bias (±1 before scaling; 0: no bias).
    pub bias_scaling: f64,
}

impl Default for ReservoirOptions {
    fn default() -> Self {
        Self {
            spectral_radius: 1.0,
            leak_rate: 1.0,
            input_scaling: 1.0,
            connectivity: 0.1,
            input_connectivity: 0.1,
            bias_scaling: 0.0,
        }
    }
}

impl ReservoirOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, v: f64, range: &str| {
            Err(CellError::Config(format!(
                "reservoir {name} must be {range}, got {v}"
            )))
        };
        // `!(in range)` so that NaN fails every check.
        if !(self.spectral_radius >= 0.0 && self.spectral_radius.is_finite()) {
            return bad("spectral radius", self.spectral_radius, "finite and ≥ 0");
        }
        if !(self.leak_rate > 0.0 && self.leak_rate <= 1.0) {
            return bad("leak rate", self.leak_rate, "in (0, 1]");
        }
        for (name, v) in [
            ("input scaling", self.input_scaling),
            ("bias scaling", self.bias_scaling),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(name, v, "finite and ≥ 0");
            }
        }
        for (name, v) in [
            ("connectivity", self.connectivity),
            ("input connectivity", self.input_connectivity),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(name, v, "in (0, 1]");
            }
        }
        Ok(())
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
        if self.cell == CellKind::Esn {
            self.reservoir.validate()?;
        }
        Ok(())
    }
}

/// A recurrent network with a linear read-out applied at every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// A per-step front end before the recurrent stack; `rnn.input_size` is then its output
    /// size and the model reads `encoder_input` features per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderConfig>,
    /// Features per step the encoder reads (with an encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_input: Option<usize>,
    pub rnn: RnnConfig,
    pub output_size: usize,
    /// An auto-associative head beside the read-out (the generators of the dual network);
    /// its parameters sit under `autoassoc.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoassoc: Option<AutoAssoc>,
}

/// What the auto-associative head reconstructs, at every step, from the stack's output `h_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoAssoc {
    /// The step's input `x_t` (features the model reads, before any encoder).
    Input,
    /// The step's input and the state the step started from, `[x_t, s_{t-1}]`, `s` the
    /// flattened state of every layer ([`crate::RnnState::flatten`]): the transition
    /// pseudo-patterns of Ans, Rousset, French & Musca (2004).
    InputAndState,
}

impl ModelConfig {
    /// A stack of `rnn` layers and a read-out of `output_size`, without an encoder.
    pub fn new(rnn: RnnConfig, output_size: usize) -> Self {
        Self {
            encoder: None,
            encoder_input: None,
            rnn,
            output_size,
            autoassoc: None,
        }
    }

    /// Values in the flattened recurrent state of one sequence: `h` of every layer, then `c`
    /// of every layer for the LSTM ([`crate::RnnState::flatten`]).
    pub fn state_size(&self) -> usize {
        let per = if self.rnn.cell == CellKind::Lstm {
            2
        } else {
            1
        };
        per * self.rnn.num_layers * self.rnn.hidden_size
    }

    /// Width of the auto-associative head's output (0 without one).
    pub fn autoassoc_size(&self) -> usize {
        match self.autoassoc {
            None => 0,
            Some(AutoAssoc::Input) => self.input_size(),
            Some(AutoAssoc::InputAndState) => self.input_size() + self.state_size(),
        }
    }

    /// Features per step the model reads (the encoder's input, else the stack's).
    pub fn input_size(&self) -> usize {
        match (&self.encoder, self.encoder_input) {
            (Some(_), Some(n)) => n,
            _ => self.rnn.input_size,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.rnn.validate()?;
        if self.output_size == 0 {
            return Err(CellError::Config("output_size must be positive".into()));
        }
        match (&self.encoder, self.encoder_input) {
            (None, None) => {}
            (Some(e), Some(n)) => {
                if n == 0 || e.output_size() != self.rnn.input_size {
                    return Err(CellError::Config(format!(
                        "the encoder maps {n} features to {} but the recurrent stack reads {}",
                        e.output_size(),
                        self.rnn.input_size
                    )));
                }
            }
            _ => {
                return Err(CellError::Config(
                    "an encoder needs encoder_input (and encoder_input an encoder)".into(),
                ))
            }
        }
        Ok(())
    }
}

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
}

impl CellKind {
    pub const ALL: [CellKind; 3] = [CellKind::Srn, CellKind::Lstm, CellKind::Gru];

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Srn => "srn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// Rows of `weight_ih` per hidden unit (number of gates).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Srn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
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

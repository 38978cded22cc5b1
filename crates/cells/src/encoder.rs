//! An optional front end that maps each time step's features before the recurrent stack:
//! `x` (batch, time, features) → (batch, time, stack input). Audio and video front ends (a
//! spectrogram projection, a convolutional frame encoder) implement [`Encoder`]; a model built
//! from a [`ModelConfig`](crate::ModelConfig) with an `encoder` puts one in front of its stack,
//! its parameters under `encoder.`.
use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{CellError, Result};

/// A per-step front end.
pub trait Encoder: Send + Sync {
    /// Features per step it reads.
    fn input_size(&self) -> usize;
    /// Features per step it gives the recurrent stack.
    fn output_size(&self) -> usize;
    /// `x` (batch, time, input_size) → (batch, time, output_size).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// The encoders a configuration can name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderConfig {
    /// One dense layer per step, `act(x Wᵀ + b)` (`encoder.weight` (size, features),
    /// `encoder.bias` (size), initialised as `torch.nn.Linear`).
    Dense {
        size: usize,
        #[serde(default)]
        activation: DenseActivation,
    },
}

/// Non-linearity of a dense encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenseActivation {
    #[default]
    Tanh,
    Relu,
    /// No non-linearity (a linear projection).
    Identity,
}

impl EncoderConfig {
    /// Features per step the encoder gives the stack.
    pub fn output_size(&self) -> usize {
        match self {
            EncoderConfig::Dense { size, .. } => *size,
        }
    }

    /// Builds the encoder for `features` input features per step from `vb` (at `encoder.`).
    pub fn build(&self, features: usize, vb: VarBuilder) -> Result<Box<dyn Encoder>> {
        match *self {
            EncoderConfig::Dense { size, activation } => {
                if size == 0 {
                    return Err(CellError::Config("a dense encoder needs size ≥ 1".into()));
                }
                let b = 1.0 / (features as f64).sqrt();
                let init = candle_nn::Init::Uniform { lo: -b, up: b };
                let w = vb.get_with_hints((size, features), "weight", init)?;
                let bias = vb.get_with_hints(size, "bias", init)?;
                Ok(Box::new(Dense {
                    linear: Linear::new(w, Some(bias)),
                    activation,
                    features,
                    size,
                }))
            }
        }
    }
}

/// [`EncoderConfig::Dense`].
struct Dense {
    linear: Linear,
    activation: DenseActivation,
    features: usize,
    size: usize,
}

impl Encoder for Dense {
    fn input_size(&self) -> usize {
        self.features
    }
    fn output_size(&self) -> usize {
        self.size
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear.forward(x)?;
        Ok(match self.activation {
            DenseActivation::Tanh => y.tanh()?,
            DenseActivation::Relu => y.relu()?,
            DenseActivation::Identity => y,
        })
    }
}

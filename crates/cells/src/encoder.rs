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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::{CellKind, ModelConfig, Recurrent, RnnConfig, SequenceModel};

    fn config(encoder: Option<EncoderConfig>, input: Option<usize>) -> ModelConfig {
        let rnn = RnnConfig {
            cell: CellKind::Gru,
            input_size: 5,
            hidden_size: 4,
            num_layers: 1,
            activation: Default::default(),
            ct: Default::default(),
            kernel: Default::default(),
            threads: Some(1),
        };
        ModelConfig {
            encoder,
            encoder_input: input,
            ..ModelConfig::new(rnn, 3)
        }
    }

    #[test]
    fn a_dense_encoder_feeds_the_stack_and_learns() {
        let enc = EncoderConfig::Dense {
            size: 5,
            activation: DenseActivation::Tanh,
        };
        let cfg = config(Some(enc), Some(9));
        assert_eq!(cfg.input_size(), 9);
        let (model, store) = SequenceModel::init(&cfg, 3, DType::F64, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f64, 1.0, (2, 6, 9), &Device::Cpu).unwrap();
        let (y, _) = model.forward(&x, None, None).unwrap();
        assert_eq!(y.dims(), &[2, 6, 3]);
        // The encoder is a tanh dense layer: the stack sees exactly tanh(x Wᵀ + b).
        let t = store.tensors();
        let get = |n: &str| t.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let (w, b) = (get("encoder.weight"), get("encoder.bias"));
        assert_eq!(w.dims(), &[5, 9]);
        let xe = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .tanh()
            .unwrap();
        let (hs, _) = model.rnn().forward(&xe, None, None).unwrap();
        let (_, hs_model, _) = model.forward_full(&x, None, None).unwrap();
        let d: f64 = (hs - hs_model)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-12, "{d}");
        // Gradients reach the encoder's parameters.
        let grads = y.sum_all().unwrap().backward().unwrap();
        let vars = store.vars();
        let wv = &vars.iter().find(|(n, _)| n == "encoder.weight").unwrap().1;
        let g = grads.get(wv.as_tensor()).expect("encoder gradient");
        let norm: f64 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0);
        // One step through the model equals the first step of the sequence.
        let st = model.rnn_zero_state(2, DType::F64, &Device::Cpu).unwrap();
        let (y0, _) = model
            .step(&x.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), &st)
            .unwrap();
        let d: f64 = (y0 - y.narrow(1, 0, 1).unwrap().squeeze(1).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-12, "{d}");
    }

    #[test]
    fn an_encoder_that_does_not_fit_the_stack_is_refused() {
        let enc = EncoderConfig::Dense {
            size: 6,
            activation: DenseActivation::Relu,
        };
        let err = config(Some(enc.clone()), Some(9)).validate().unwrap_err();
        assert!(err.to_string().contains("reads 5"), "{err}");
        assert!(config(Some(enc), None).validate().is_err());
        assert!(config(None, Some(9)).validate().is_err());
        let json = serde_json::to_string(&config(None, None)).unwrap();
        assert!(!json.contains("encoder"), "{json}");
    }
}

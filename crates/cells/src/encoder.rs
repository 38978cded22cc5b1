//! An optional front end that maps each time step's features before the recurrent stack:
//! `x` (batch, time, features) → (batch, time, stack input). Audio and video front ends (a
//! spectrogram projection, a convolutional frame encoder) implement [`Encoder`]; a model built
//! from a [`ModelConfig`](crate::ModelConfig) with an `encoder` puts one in front of its stack,
//! its parameters under `encoder.`.
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};
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
    /// Convolutions over each step's frame (the features read as a square grey image, row by
    /// row): one 3×3 convolution of stride 2 and padding 1 per entry of `channels`, each
    /// followed by a ReLU (a 64×64 frame becomes 32×32, then 16×16, …), then the flattened
    /// maps through a linear layer to `size` features. Parameters `encoder.conv{k}.weight`
    /// (out, in, 3, 3) / `.bias` and `encoder.proj.weight` / `.bias`, initialised as
    /// `torch.nn.Conv2d` and `torch.nn.Linear`.
    Conv { channels: Vec<usize>, size: usize },
}

/// Side of a conv layer's output map: 3×3 kernel, stride 2, padding 1.
fn conv_out(side: usize) -> usize {
    (side - 1) / 2 + 1
}

/// Default output size of `conv:` encoders written without one.
pub const CONV_DEFAULT_SIZE: usize = 256;

impl std::str::FromStr for EncoderConfig {
    type Err = CellError;
    /// `dense:SIZE[:tanh|relu|identity]` or `conv:C1,C2,…[:SIZE]` (size default 256).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            CellError::Config(format!(
                "encoder `{s}`: {why}; valid: dense:SIZE[:tanh|relu|identity], \
                 conv:C1,C2,…[:SIZE] (channels of each stride-2 3×3 convolution, then a linear \
                 layer to SIZE, default {CONV_DEFAULT_SIZE})"
            ))
        };
        let num = |t: &str| -> Result<usize> {
            t.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("`{t}` is not a whole number ≥ 1")))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["dense", size, rest @ ..] if rest.len() <= 1 => Ok(EncoderConfig::Dense {
                size: num(size)?,
                activation: match rest.first() {
                    None | Some(&"tanh") => DenseActivation::Tanh,
                    Some(&"relu") => DenseActivation::Relu,
                    Some(&"identity") => DenseActivation::Identity,
                    Some(a) => return Err(bad(&format!("unknown activation `{a}`"))),
                },
            }),
            ["conv", channels, rest @ ..] if rest.len() <= 1 => Ok(EncoderConfig::Conv {
                channels: channels.split(',').map(num).collect::<Result<_>>()?,
                size: rest.first().map_or(Ok(CONV_DEFAULT_SIZE), |t| num(t))?,
            }),
            _ => Err(bad("unknown form")),
        }
    }
}

impl std::fmt::Display for EncoderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncoderConfig::Dense { size, activation } => {
                let a = match activation {
                    DenseActivation::Tanh => "tanh",
                    DenseActivation::Relu => "relu",
                    DenseActivation::Identity => "identity",
                };
                write!(f, "dense:{size}:{a}")
            }
            EncoderConfig::Conv { channels, size } => {
                let c: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
                write!(f, "conv:{}:{size}", c.join(","))
            }
        }
    }
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
            EncoderConfig::Dense { size, .. } | EncoderConfig::Conv { size, .. } => *size,
        }
    }

    /// Builds the encoder for `features` input features per step from `vb` (at `encoder.`).
    pub fn build(&self, features: usize, vb: VarBuilder) -> Result<Box<dyn Encoder>> {
        match *self {
            EncoderConfig::Conv { ref channels, size } => {
                Ok(Box::new(Conv::new(channels, size, features, vb)?))
            }
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

/// [`EncoderConfig::Conv`].
struct Conv {
    convs: Vec<Conv2d>,
    proj: Linear,
    side: usize,
    size: usize,
}

impl Conv {
    fn new(channels: &[usize], size: usize, features: usize, vb: VarBuilder) -> Result<Self> {
        let side = (features as f64).sqrt().round() as usize;
        if side * side != features || side < 2 {
            return Err(CellError::Config(format!(
                "a conv encoder reads square frames; {features} features per step are not a \
                 square image"
            )));
        }
        if channels.is_empty() || channels.contains(&0) || size == 0 {
            return Err(CellError::Config(format!(
                "a conv encoder needs at least one layer and sizes ≥ 1, got channels \
                 {channels:?} and size {size}"
            )));
        }
        let cfg = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let (mut c_in, mut s) = (1usize, side);
        let mut convs = Vec::with_capacity(channels.len());
        for (k, &c_out) in channels.iter().enumerate() {
            let b = 1.0 / ((c_in * 9) as f64).sqrt();
            let init = candle_nn::Init::Uniform { lo: -b, up: b };
            let v = vb.pp(format!("conv{k}"));
            let w = v.get_with_hints((c_out, c_in, 3, 3), "weight", init)?;
            let bias = v.get_with_hints(c_out, "bias", init)?;
            convs.push(Conv2d::new(w, Some(bias), cfg));
            c_in = c_out;
            s = conv_out(s);
        }
        let fan_in = c_in * s * s;
        let b = 1.0 / (fan_in as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -b, up: b };
        let v = vb.pp("proj");
        let w = v.get_with_hints((size, fan_in), "weight", init)?;
        let bias = v.get_with_hints(size, "bias", init)?;
        Ok(Self {
            convs,
            proj: Linear::new(w, Some(bias)),
            side,
            size,
        })
    }
}

impl Encoder for Conv {
    fn input_size(&self) -> usize {
        self.side * self.side
    }
    fn output_size(&self) -> usize {
        self.size
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let mut h = x.reshape((b * t, 1, self.side, self.side))?;
        for c in &self.convs {
            h = c.forward(&h)?.relu()?;
        }
        let h = self.proj.forward(&h.flatten_from(1)?)?;
        Ok(h.reshape((b, t, self.size))?)
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
            reservoir: Default::default(),
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
    fn a_conv_encoder_maps_frames_and_its_weights_learn() {
        let enc: EncoderConfig = "conv:3,4:5".parse().unwrap();
        assert_eq!(
            enc,
            EncoderConfig::Conv {
                channels: vec![3, 4],
                size: 5
            }
        );
        assert_eq!(enc.to_string().parse::<EncoderConfig>().unwrap(), enc);
        let json = serde_json::to_string(&enc).unwrap();
        assert_eq!(serde_json::from_str::<EncoderConfig>(&json).unwrap(), enc);
        // 8×8 frames: 8 → 4 → 2, so the projection reads 4·2·2 = 16 features.
        let cfg = config(Some(enc), Some(64));
        let (model, store) = SequenceModel::init(&cfg, 1, DType::F64, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f64, 1.0, (2, 3, 64), &Device::Cpu).unwrap();
        let (y, _) = model.forward(&x, None, None).unwrap();
        assert_eq!(y.dims(), &[2, 3, 3]);
        let shapes: Vec<(String, Vec<usize>)> = store
            .tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with("encoder."))
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        for (name, dims) in [
            ("encoder.conv0.weight", vec![3, 1, 3, 3]),
            ("encoder.conv1.weight", vec![4, 3, 3, 3]),
            ("encoder.conv1.bias", vec![4]),
            ("encoder.proj.weight", vec![5, 16]),
        ] {
            assert!(
                shapes.iter().any(|(n, d)| n == name && *d == dims),
                "{name} {dims:?} in {shapes:?}"
            );
        }
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
        // Gradients reach both convolutions' weights.
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let vars = store.vars();
        for name in ["encoder.conv0.weight", "encoder.conv1.weight"] {
            let v = &vars.iter().find(|(n, _)| n == name).unwrap().1;
            let g = grads.get(v.as_tensor()).expect("conv gradient");
            let norm: f64 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm > 0.0, "{name}");
        }
        // Frames that are not square, and bad specs, are refused.
        let bad = config(Some("conv:2:5".parse().unwrap()), Some(10));
        assert!(SequenceModel::init(&bad, 0, DType::F64, &Device::Cpu).is_err());
        for s in ["conv:", "conv:0,2", "conv:2:x", "pool:2", "dense:4:sine"] {
            assert!(s.parse::<EncoderConfig>().is_err(), "{s}");
        }
        assert_eq!(
            "dense:4".parse::<EncoderConfig>().unwrap(),
            EncoderConfig::Dense {
                size: 4,
                activation: DenseActivation::Tanh
            }
        );
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

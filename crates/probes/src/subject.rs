//! What a probe measures: a model of any cell, untrained or loaded from a run, with the way a
//! scalar input series drives it.
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use remanence_cells::{CellKind, ModelConfig, ParamStore, SequenceModel};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// Freshly initialised from `seed` (the cell's own initialisation rule).
    Untrained { seed: u64 },
    /// The weights of a run folder.
    Run { path: PathBuf },
    /// Weights the caller built (tests, other tools).
    Built { what: String },
}

/// How a scalar series u_t becomes the model's input: u_t in feature `channel` of
/// `input_size`, zeros in every other feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Drive {
    pub input_size: usize,
    pub channel: usize,
}

impl Drive {
    /// Feature 0 of the model's input features.
    pub fn for_model(config: &ModelConfig) -> Self {
        Self {
            input_size: config.input_size(),
            channel: 0,
        }
    }

    /// What a reader should know about the drive, for models with more than one input feature.
    pub fn note(&self) -> Option<String> {
        (self.input_size != 1).then(|| {
            format!(
                "the model reads {} features per step; the scalar series drives feature {} and \
                 the other features are held at 0",
                self.input_size, self.channel
            )
        })
    }
}

/// Which values of the model at each step the read-outs see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Features {
    /// The whole recurrent state: `h` of every layer, then `c` of every layer for the LSTM
    /// ([`remanence_cells::RnnState::flatten`]).
    #[default]
    State,
    /// The top layer's output, what the model's read-out head sees (`h` of the top layer; the
    /// LTC's mapped motor neurons).
    Output,
}

impl std::str::FromStr for Features {
    type Err = crate::error::ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "state" => Ok(Self::State),
            "output" => Ok(Self::Output),
            _ => Err(invalid(format!(
                "unknown features `{s}`; valid: state, output"
            ))),
        }
    }
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::State => "state",
            Self::Output => "output",
        })
    }
}

/// A model to probe, in f64 on the CPU or another device.
pub struct Subject {
    model: SequenceModel,
    store: ParamStore,
    device: Device,
    source: Source,
    drive: Drive,
}

/// What a report says about its model.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectInfo {
    pub cell: CellKind,
    pub hidden_size: usize,
    pub num_layers: usize,
    /// Values in the flattened state (`h` of every layer, and `c` for the LSTM).
    pub state_size: usize,
    /// Values of the top layer's output per step.
    pub output_size: usize,
    pub parameters: usize,
    pub source: Source,
    pub drive: Drive,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_note: Option<String>,
}

impl Subject {
    /// A model whose parameters are f64 (the probes compare numbers to 1e-6 and below).
    pub fn new(
        model: SequenceModel,
        store: ParamStore,
        device: Device,
        source: Source,
    ) -> Result<Self> {
        if let Some((name, v)) = store
            .vars()
            .into_iter()
            .find(|(_, v)| v.dtype() != DType::F64)
        {
            return Err(invalid(format!(
                "the probes run in f64, and parameter `{name}` is {:?}; load the model as f64",
                v.dtype()
            )));
        }
        let drive = Drive::for_model(model.config());
        Ok(Self {
            model,
            store,
            device,
            source,
            drive,
        })
    }

    /// A freshly initialised f64 model of `config` on the CPU, from `seed`.
    pub fn untrained(config: &ModelConfig, seed: u64) -> Result<Self> {
        let device = Device::Cpu;
        let (model, store) = SequenceModel::init(config, seed, DType::F64, &device)?;
        Self::new(model, store, device, Source::Untrained { seed })
    }

    pub fn model(&self) -> &SequenceModel {
        &self.model
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn drive(&self) -> Drive {
        self.drive
    }

    /// The parameters by name (`rnn.weight_hh_l0`, …).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.store.tensors()
    }

    /// Values in the flattened recurrent state.
    pub fn state_size(&self) -> usize {
        self.config().state_size()
    }

    /// Values per step of the top layer's output.
    pub fn output_size(&self) -> usize {
        use remanence_cells::Recurrent;
        self.model.rnn().output_size()
    }

    /// Values per step of `features`.
    pub fn feature_size(&self, features: Features) -> usize {
        match features {
            Features::State => self.state_size(),
            Features::Output => self.output_size(),
        }
    }

    pub fn info(&self) -> SubjectInfo {
        let r = &self.config().rnn;
        SubjectInfo {
            cell: r.cell,
            hidden_size: r.hidden_size,
            num_layers: r.num_layers,
            state_size: self.state_size(),
            output_size: self.output_size(),
            parameters: self.store.num_parameters(),
            source: self.source.clone(),
            drive: self.drive,
            drive_note: self.drive.note(),
        }
    }

    /// The model in a few words: `lstm (hidden 50, 1 layer, 100 state values)`.
    pub fn describe_model(&self) -> String {
        let r = &self.config().rnn;
        format!(
            "{} (hidden {}, {} layer{}, {} state values)",
            r.cell,
            r.hidden_size,
            r.num_layers,
            if r.num_layers == 1 { "" } else { "s" },
            self.state_size()
        )
    }

    /// The model and where it came from: `lstm (hidden 50, 1 layer, 100 state values),
    /// untrained, seed 0`.
    pub fn describe(&self) -> String {
        let from = match &self.source {
            Source::Untrained { seed } => format!("untrained, seed {seed}"),
            Source::Run { path } => format!("run {}", path.display()),
            Source::Built { what } => what.clone(),
        };
        format!("{}, {from}", self.describe_model())
    }
}

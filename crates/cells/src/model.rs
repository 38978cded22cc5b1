//! A recurrent network with a linear read-out applied at every time step, and an optional
//! per-step encoder in front of it (its parameters under `encoder.`).
//!
//! On disk the recurrent layers sit under `rnn.` with PyTorch's names and the read-out under
//! `head.weight` (out, hidden) / `head.bias` (out), as `torch.nn.Linear`, so a PyTorch model
//! `{rnn: nn.LSTM(batch_first=True), head: nn.Linear}` loads the file with `load_state_dict`.
//!
//! A model may carry an auto-associative head beside the read-out ([`AutoAssoc`], weights
//! `autoassoc.weight` (size, hidden) / `autoassoc.bias`): a second linear map of the same `h_t`
//! that reconstructs the step's input (and the state the step started from). The dual network's
//! generators reverberate through it; [`SequenceModel::forward`] ignores it.
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::cell::Recurrent;
use crate::config::{AutoAssoc, ModelConfig};
use crate::encoder::Encoder;
use crate::error::Result;
use crate::params::ParamStore;
use crate::stack::StackedRnn;
use crate::state::RnnState;

pub struct SequenceModel {
    encoder: Option<Box<dyn Encoder>>,
    rnn: StackedRnn,
    head: Linear,
    autoassoc: Option<Linear>,
    config: ModelConfig,
}

impl SequenceModel {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let encoder = match &config.encoder {
            Some(e) => Some(e.build(config.input_size(), vb.pp("encoder"))?),
            None => None,
        };
        let rnn = StackedRnn::new(&config.rnn, vb.pp("rnn"))?;
        // torch.nn.Linear: weight and bias ~ U(-1/√fan_in, 1/√fan_in).
        let fan_in = rnn.output_size();
        let b = 1.0 / (fan_in as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -b, up: b };
        let linear = |name: &str, out: usize| -> Result<Linear> {
            let vbh = vb.pp(name);
            let w = vbh.get_with_hints((out, fan_in), "weight", init)?;
            let bias = vbh.get_with_hints(out, "bias", init)?;
            Ok(Linear::new(w, Some(bias)))
        };
        let head = linear("head", config.output_size)?;
        let autoassoc = match config.autoassoc {
            Some(_) => Some(linear("autoassoc", config.autoassoc_size())?),
            None => None,
        };
        Ok(Self {
            encoder,
            rnn,
            head,
            autoassoc,
            config: config.clone(),
        })
    }

    /// A freshly initialised model and its parameters, from `seed`.
    pub fn init(
        config: &ModelConfig,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, ParamStore)> {
        let store = ParamStore::seeded(seed);
        StackedRnn::seed_store(&config.rnn, &store, "rnn", dtype, device)?;
        let model = Self::new(config, store.var_builder(dtype, device))?;
        Ok((model, store))
    }

    /// A model over loaded tensors; every tensor must be used and match its shape.
    pub fn from_store(
        config: &ModelConfig,
        store: &ParamStore,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let model = Self::new(config, store.var_builder(dtype, device))?;
        store.finish_loading()?;
        Ok(model)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn rnn(&self) -> &StackedRnn {
        &self.rnn
    }

    /// The model's parameter constraints, applied to `store` after every update: the LTC in
    /// clip mode keeps `w`, `sensory_w`, `cm` and `gleak` ≥ 0. A no-op for other models.
    pub fn apply_constraints(&self, store: &ParamStore) -> Result<()> {
        let names = self.rnn.nonnegative_parameters();
        if !names.is_empty() {
            store.clamp_nonnegative(&names)?;
        }
        Ok(())
    }

    /// Full names of parameters to clamp to ≥ 0 after every update (LTC in clip mode).
    pub fn nonnegative_parameters(&self) -> Vec<String> {
        self.rnn.nonnegative_parameters()
    }

    /// `x` (batch, time, input) → read-out (batch, time, output), recurrent outputs
    /// (batch, time, hidden) and the final state.
    pub fn forward_full(
        &self,
        x: &Tensor,
        state: Option<&RnnState>,
        dt: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, RnnState)> {
        let (hs, last) = match &self.encoder {
            Some(e) => self.rnn.forward(&e.forward(x)?, state, dt)?,
            None => self.rnn.forward(x, state, dt)?,
        };
        let y = self.head.forward(&hs)?;
        Ok((y, hs, last))
    }

    /// `x` (batch, time, input) → read-out (batch, time, output) and the final state.
    pub fn forward(
        &self,
        x: &Tensor,
        state: Option<&RnnState>,
        dt: Option<&Tensor>,
    ) -> Result<(Tensor, RnnState)> {
        let (y, _, last) = self.forward_full(x, state, dt)?;
        Ok((y, last))
    }

    /// The all-zero state of the recurrent layers for `batch` sequences.
    pub fn rnn_zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<RnnState> {
        self.rnn.zero_state(batch, dtype, device)
    }

    /// One step: `x` (batch, input) → read-out (batch, output) and the new state.
    pub fn step(&self, x: &Tensor, state: &RnnState) -> Result<(Tensor, RnnState)> {
        let (h, st) = match &self.encoder {
            Some(e) => {
                let xe = e.forward(&x.unsqueeze(1)?)?.squeeze(1)?;
                self.rnn.step(&xe, None, state)?
            }
            None => self.rnn.step(x, None, state)?,
        };
        Ok((self.head.forward(&h)?, st))
    }

    /// The auto-associative head on recurrent outputs `hs` ((batch, time, hidden) or (batch,
    /// hidden)): the reconstruction, (…, [`ModelConfig::autoassoc_size`]). An error for a model
    /// without the head.
    pub fn reconstruct(&self, hs: &Tensor) -> Result<Tensor> {
        match &self.autoassoc {
            Some(head) => Ok(head.forward(hs)?),
            None => Err(crate::error::CellError::Config(
                "this model has no auto-associative head (autoassoc)".into(),
            )),
        }
    }

    /// What the auto-associative head reconstructs, if the model has one.
    pub fn autoassoc(&self) -> Option<AutoAssoc> {
        self.config.autoassoc
    }

    /// One step from an explicit state, with everything a transition produces: `x` (batch,
    /// input) and `state` → read-out (batch, output), reconstruction (batch, autoassoc size)
    /// and the new state.
    pub fn step_autoassoc(
        &self,
        x: &Tensor,
        state: &RnnState,
    ) -> Result<(Tensor, Tensor, RnnState)> {
        let (h, st) = match &self.encoder {
            Some(e) => {
                let xe = e.forward(&x.unsqueeze(1)?)?.squeeze(1)?;
                self.rnn.step(&xe, None, state)?
            }
            None => self.rnn.step(x, None, state)?,
        };
        Ok((self.head.forward(&h)?, self.reconstruct(&h)?, st))
    }
}

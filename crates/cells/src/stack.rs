//! A stack of recurrent layers of one cell kind, run time-major over a batch-first sequence.
//!
//! Each step feeds the input through every layer before the next step, so no tracked
//! intermediate tensor is ever sliced per time step (Candle's backward of a slice pads the
//! gradient to the full tensor, which would make backpropagation through time O(T²)).
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::cell::{Recurrent, RecurrentCell};
use crate::config::{CellKind, RnnConfig};
use crate::error::{CellError, Result};
use crate::gru::Gru;
use crate::lstm::Lstm;
use crate::srn::Srn;
use crate::state::{CellState, RnnState};

pub struct StackedRnn {
    layers: Vec<Box<dyn RecurrentCell>>,
    config: RnnConfig,
}

impl StackedRnn {
    /// Builds the layers; parameters are fetched from `vb` under PyTorch's names.
    pub fn new(config: &RnnConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut layers: Vec<Box<dyn RecurrentCell>> = Vec::with_capacity(config.num_layers);
        for k in 0..config.num_layers {
            let input = if k == 0 {
                config.input_size
            } else {
                config.hidden_size
            };
            let h = config.hidden_size;
            let vb = vb.clone();
            layers.push(match config.cell {
                CellKind::Srn => Box::new(Srn::new(input, h, k, config.activation, vb)?),
                CellKind::Lstm => Box::new(Lstm::new(input, h, k, vb)?),
                CellKind::Gru => Box::new(Gru::new(input, h, k, vb)?),
            });
        }
        Ok(Self {
            layers,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn check_state(&self, state: &RnnState, batch: usize) -> Result<()> {
        let expected = [self.layers.len(), batch, self.config.hidden_size];
        if state.h.dims() != expected {
            return Err(CellError::Input(format!(
                "initial state h has shape {:?}, expected {:?} (layers, batch, hidden)",
                state.h.dims(),
                expected
            )));
        }
        let needs_c = self.layers[0].has_cell_state();
        match (&state.c, needs_c) {
            (Some(c), true) if c.dims() != expected => Err(CellError::Input(format!(
                "initial state c has shape {:?}, expected {:?}",
                c.dims(),
                expected
            ))),
            (None, true) => Err(CellError::Input("an LSTM initial state needs c".into())),
            (Some(_), false) => Err(CellError::Input(format!(
                "a {} state has no cell state c",
                self.config.cell
            ))),
            _ => Ok(()),
        }
    }
}

impl Recurrent for StackedRnn {
    fn input_size(&self) -> usize {
        self.config.input_size
    }

    fn output_size(&self) -> usize {
        self.config.hidden_size
    }

    fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<RnnState> {
        let states = self
            .layers
            .iter()
            .map(|l| l.zero_state(batch, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(RnnState::from_layers(&states)?)
    }

    fn forward(
        &self,
        x: &Tensor,
        state: Option<&RnnState>,
        dt: Option<&Tensor>,
    ) -> Result<(Tensor, RnnState)> {
        let (batch, time, feat) = x.dims3().map_err(|_| {
            CellError::Input(format!(
                "x has shape {:?}, expected (batch, time, features)",
                x.dims()
            ))
        })?;
        if feat != self.config.input_size {
            return Err(CellError::Input(format!(
                "x has {feat} features per step, the model expects {}",
                self.config.input_size
            )));
        }
        if time == 0 {
            return Err(CellError::Input("x has no time steps".into()));
        }
        if let Some(dt) = dt {
            if dt.dims() != [batch, time] {
                return Err(CellError::Input(format!(
                    "dt has shape {:?}, expected {:?} (batch, time)",
                    dt.dims(),
                    [batch, time]
                )));
            }
        }
        let mut states = match state {
            Some(s) => {
                self.check_state(s, batch)?;
                s.layers()?
            }
            None => self.zero_state(batch, x.dtype(), x.device())?.layers()?,
        };
        let xs = x.chunk(time, 1)?;
        let dts = dt.map(|d| d.chunk(time, 1)).transpose()?;
        let mut outputs = Vec::with_capacity(time);
        for (t, xt) in xs.iter().enumerate() {
            let dt_t = dts.as_ref().map(|d| d[t].squeeze(1)).transpose()?;
            let mut inp = xt.squeeze(1)?;
            for (layer, st) in self.layers.iter().zip(states.iter_mut()) {
                *st = layer.step(&inp, dt_t.as_ref(), st)?;
                inp = st.h.clone();
            }
            outputs.push(inp);
        }
        let y = Tensor::stack(&outputs, 1)?;
        Ok((y, RnnState::from_layers(&states)?))
    }

    fn step(
        &self,
        x: &Tensor,
        dt: Option<&Tensor>,
        state: &RnnState,
    ) -> Result<(Tensor, RnnState)> {
        let (batch, feat) = x.dims2().map_err(|_| {
            CellError::Input(format!(
                "x has shape {:?}, expected (batch, features)",
                x.dims()
            ))
        })?;
        if feat != self.config.input_size {
            return Err(CellError::Input(format!(
                "x has {feat} features, the model expects {}",
                self.config.input_size
            )));
        }
        self.check_state(state, batch)?;
        let mut states: Vec<CellState> = state.layers()?;
        let mut inp = x.clone();
        for (layer, st) in self.layers.iter().zip(states.iter_mut()) {
            *st = layer.step(&inp, dt, st)?;
            inp = st.h.clone();
        }
        Ok((inp, RnnState::from_layers(&states)?))
    }
}

//! A stack of recurrent layers of one cell kind, run time-major over a batch-first sequence.
//!
//! Each step feeds the input through every layer before the next step, so no tracked
//! intermediate tensor is ever sliced per time step (Candle's backward of a slice pads the
//! gradient to the full tensor, which would make backpropagation through time O(T²)).
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::cell::{Recurrent, RecurrentCell};
use crate::cells::{Cfc, CtRnn, Esn, Gru, Lstm, Ltc, OdeRnn, Srn};
use crate::config::{CellKind, RnnConfig};
use crate::error::{CellError, Result};
use crate::params::ParamStore;
use crate::route::Route;
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
        let mut input = config.input_size;
        for k in 0..config.num_layers {
            let h = config.hidden_size;
            let vb = vb.clone();
            let ct = &config.ct;
            let layer: Box<dyn RecurrentCell> = match config.cell {
                CellKind::Srn => Box::new(Srn::new(input, h, k, config.activation, vb)?),
                CellKind::Lstm => Box::new(Lstm::new(input, h, k, vb)?),
                CellKind::Gru => Box::new(Gru::new(input, h, k, vb)?),
                CellKind::Ltc => {
                    let motor = ct.wiring.output_dim(h);
                    Box::new(Ltc::new(input, h, motor, ct, vb.pp("rnn_cell"))?)
                }
                CellKind::Cfc => Box::new(Cfc::new(input, h, ct, vb.pp("rnn_cell"))?),
                CellKind::Ctrnn => Box::new(CtRnn::new(input, h, k, ct, vb)?),
                CellKind::Odernn => Box::new(OdeRnn::new(input, h, k, ct, vb)?),
                CellKind::Esn => Box::new(Esn::new(input, h, k, &config.reservoir, vb)?),
            };
            input = layer.output_size();
            layers.push(layer);
        }
        Ok(Self {
            layers,
            config: config.clone(),
        })
    }

    /// Before building a fresh model from a seeded store: adds the tensors that do not come
    /// from an initialisation rule (the LTC's wiring, the reservoir's scaled sparse matrices)
    /// under `prefix`.
    pub fn seed_store(
        config: &RnnConfig,
        store: &ParamStore,
        prefix: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        if config.cell == CellKind::Ltc {
            let wiring = Ltc::wiring(config.input_size, config.hidden_size, &config.ct)?;
            Ltc::seed_wiring(store, &format!("{prefix}.rnn_cell"), &wiring, dtype, device)?;
        }
        if config.cell == CellKind::Esn {
            let h = config.hidden_size;
            let inputs: Vec<usize> = (0..config.num_layers)
                .map(|k| if k == 0 { config.input_size } else { h })
                .collect();
            Esn::seed_reservoir(store, prefix, &inputs, h, &config.reservoir, dtype, device)?;
        }
        Ok(())
    }

    /// Layer by layer along `route`, when every layer has that path.
    fn forward_fused(
        &self,
        x: &Tensor,
        dt: Option<&Tensor>,
        states: &[CellState],
        route: Route,
    ) -> Result<Option<(Tensor, RnnState)>> {
        let mut inp = x.clone();
        let mut finals = Vec::with_capacity(self.layers.len());
        for (layer, st) in self.layers.iter().zip(states) {
            match layer.forward_sequence(&inp, dt, st, route)? {
                Some((y, last)) => {
                    inp = y;
                    finals.push(last);
                }
                None => return Ok(None),
            }
        }
        Ok(Some((inp, RnnState::from_layers(&finals)?)))
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

/// Elapsed times must be positive and finite; says which sample and step is not.
fn check_elapsed(dt: &Tensor, time: usize) -> Result<()> {
    let v: Vec<f64> = dt.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    if let Some(k) = v.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(CellError::Input(format!(
            "elapsed time dt[{}, {}] = {} must be positive and finite",
            k / time,
            k % time,
            v[k]
        )));
    }
    Ok(())
}

impl Recurrent for StackedRnn {
    fn input_size(&self) -> usize {
        self.config.input_size
    }

    fn output_size(&self) -> usize {
        self.layers.last().map(|l| l.output_size()).unwrap_or(0)
    }

    fn nonnegative_parameters(&self) -> Vec<String> {
        self.layers
            .iter()
            .flat_map(|l| l.nonnegative_parameters())
            .collect()
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
            check_elapsed(dt, time)?;
        }
        let mut states = match state {
            Some(s) => {
                self.check_state(s, batch)?;
                s.layers()?
            }
            None => self.zero_state(batch, x.dtype(), x.device())?.layers()?,
        };
        let c = &self.config;
        let route = Route::select(x.device(), c.cell, c.kernel, c.threads);
        if route != Route::Reference {
            if let Some(r) = self.forward_fused(x, dt, &states, route)? {
                return Ok(r);
            }
        }
        let xs = x.chunk(time, 1)?;
        let dts = dt.map(|d| d.chunk(time, 1)).transpose()?;
        let mut outputs = Vec::with_capacity(time);
        for (t, xt) in xs.iter().enumerate() {
            let dt_t = dts.as_ref().map(|d| d[t].squeeze(1)).transpose()?;
            let mut inp = xt.squeeze(1)?;
            for (layer, st) in self.layers.iter().zip(states.iter_mut()) {
                *st = layer.step(&inp, dt_t.as_ref(), st)?;
                inp = layer.output(st)?;
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
            inp = layer.output(st)?;
        }
        Ok((inp, RnnState::from_layers(&states)?))
    }
}

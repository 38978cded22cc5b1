use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::route::Route;
use crate::state::{CellState, RnnState};

/// One recurrent layer advanced by one time step.
///
/// `x` is (batch, input_size). `dt` is the elapsed time of this step per sample, (batch,), for
/// continuous-time cells; discrete-time cells treat every step as one tick and ignore it.
pub trait RecurrentCell: Send + Sync {
    fn input_size(&self) -> usize;
    fn hidden_size(&self) -> usize;
    /// Whether the state carries a cell state `c` beside `h` (LSTM).
    fn has_cell_state(&self) -> bool {
        false
    }
    fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<CellState> {
        let h = Tensor::zeros((batch, self.hidden_size()), dtype, device)?;
        let c = if self.has_cell_state() {
            Some(h.clone())
        } else {
            None
        };
        Ok(CellState { h, c })
    }
    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &CellState) -> Result<CellState>;
    /// Size of the layer's output (the LTC's motor neurons; `hidden_size` for the others).
    fn output_size(&self) -> usize {
        self.hidden_size()
    }
    /// The layer's output for a state (the LTC maps its motor neurons; the others return `h`).
    fn output(&self, state: &CellState) -> Result<Tensor> {
        Ok(state.h.clone())
    }
    /// Full names of parameters to clamp to ≥ 0 after every optimizer update.
    fn nonnegative_parameters(&self) -> Vec<String> {
        Vec::new()
    }
    /// The whole sequence `x` (B, T, I), with optional `dt` (B, T), along `route` (chosen by
    /// [`Route::select`]): returns the outputs (B, T, output_size) and the final state. `None`
    /// makes the caller step through time with [`RecurrentCell::step`] (the reference), as it
    /// does for [`Route::Reference`] and for cells without fast paths.
    fn forward_sequence(
        &self,
        _x: &Tensor,
        _dt: Option<&Tensor>,
        _state: &CellState,
        _route: Route,
    ) -> Result<Option<(Tensor, CellState)>> {
        Ok(None)
    }
}

/// A whole recurrent network (one or more layers) run over batch-first sequences.
///
/// This is the seam where a fused sequence kernel replaces the reference composition: callers
/// only see `forward` and `step`.
pub trait Recurrent: Send + Sync {
    fn input_size(&self) -> usize;
    /// Size of the per-step output (the top layer's output size).
    fn output_size(&self) -> usize;
    fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<RnnState>;
    /// Runs `x` (batch, time, input) from `state` (zeros when `None`), with optional elapsed
    /// times `dt` (batch, time). Returns the top layer's outputs (batch, time, hidden) and the
    /// final state.
    fn forward(
        &self,
        x: &Tensor,
        state: Option<&RnnState>,
        dt: Option<&Tensor>,
    ) -> Result<(Tensor, RnnState)>;
    /// Advances every layer by one step: `x` is (batch, input). Returns the top layer's output.
    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &RnnState)
        -> Result<(Tensor, RnnState)>;
    /// Full names of parameters to clamp to ≥ 0 after every optimizer update.
    fn nonnegative_parameters(&self) -> Vec<String> {
        Vec::new()
    }
}

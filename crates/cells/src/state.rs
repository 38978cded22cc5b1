use candle_core::Tensor;

/// The state of one recurrent layer for a batch: `h` is (batch, hidden); `c` is the LSTM cell
/// state (batch, hidden), absent for every other cell.
#[derive(Debug, Clone)]
pub struct CellState {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

/// The state of a stack of layers in PyTorch's layout: `h` is (layers, batch, hidden) and `c`
/// (LSTM only) likewise.
#[derive(Debug, Clone)]
pub struct RnnState {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl RnnState {
    /// Splits the stacked state into one [`CellState`] per layer.
    pub fn layers(&self) -> candle_core::Result<Vec<CellState>> {
        let n = self.h.dim(0)?;
        let hs = self.h.chunk(n, 0)?;
        let cs: Vec<Option<Tensor>> = match &self.c {
            Some(c) => c.chunk(n, 0)?.into_iter().map(Some).collect(),
            None => vec![None; n],
        };
        hs.into_iter()
            .zip(cs)
            .map(|(h, c)| {
                Ok(CellState {
                    h: h.squeeze(0)?,
                    c: c.map(|c| c.squeeze(0)).transpose()?,
                })
            })
            .collect()
    }

    /// Stacks per-layer states back into PyTorch's (layers, batch, hidden) layout.
    pub fn from_layers(states: &[CellState]) -> candle_core::Result<Self> {
        let hs: Vec<&Tensor> = states.iter().map(|s| &s.h).collect();
        let h = Tensor::stack(&hs, 0)?;
        let c = if states.iter().all(|s| s.c.is_some()) && !states.is_empty() {
            let cs: Vec<&Tensor> = states.iter().filter_map(|s| s.c.as_ref()).collect();
            Some(Tensor::stack(&cs, 0)?)
        } else {
            None
        };
        Ok(Self { h, c })
    }
}

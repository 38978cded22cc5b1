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

impl RnnState {
    /// The state as one row per sequence: (batch, state) with `h` of every layer, then `c` of
    /// every layer (LSTM), each layer's `hidden` values in order.
    pub fn flatten(&self) -> candle_core::Result<Tensor> {
        let rows = |t: &Tensor| -> candle_core::Result<Tensor> {
            let (l, b, h) = t.dims3()?;
            t.transpose(0, 1)?.contiguous()?.reshape((b, l * h))
        };
        match &self.c {
            None => rows(&self.h),
            Some(c) => Tensor::cat(&[rows(&self.h)?, rows(c)?], 1),
        }
    }

    /// The inverse of [`RnnState::flatten`] for `layers` layers of `hidden` units, with a cell
    /// state `c` when `has_c`.
    pub fn unflatten(
        flat: &Tensor,
        layers: usize,
        hidden: usize,
        has_c: bool,
    ) -> candle_core::Result<Self> {
        let (b, n) = flat.dims2()?;
        let part = layers * hidden;
        let expected = part * (1 + has_c as usize);
        if n != expected {
            candle_core::bail!(
                "a flattened state of {layers} layers of {hidden} units has {expected} values, got {n}"
            );
        }
        let stack = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, layers, hidden))?
                .transpose(0, 1)?
                .contiguous()
        };
        let h = stack(flat.narrow(1, 0, part)?)?;
        let c = if has_c {
            Some(stack(flat.narrow(1, part, part)?)?)
        } else {
            None
        };
        Ok(Self { h, c })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::RnnState;

    #[test]
    fn flatten_and_unflatten_are_inverse() {
        let dev = Device::Cpu;
        let h = Tensor::arange(0f32, 24.0, &dev)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let c = (h.clone() + 100.0).unwrap();
        let s = RnnState {
            h: h.clone(),
            c: Some(c.clone()),
        };
        let flat = s.flatten().unwrap();
        assert_eq!(flat.dims(), &[3, 16]);
        // Sequence 1: layer 0's h, layer 1's h, then the same for c.
        let row: Vec<f32> = flat.get(1).unwrap().to_vec1().unwrap();
        assert_eq!(&row[..8], &[4., 5., 6., 7., 16., 17., 18., 19.]);
        assert_eq!(row[8], 104.0);
        let back = RnnState::unflatten(&flat, 2, 4, true).unwrap();
        let d = (back.h - h)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let e = (back.c.unwrap() - c)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!((d, e), (0.0, 0.0));
        assert!(RnnState::unflatten(&flat, 2, 4, false).is_err());
    }
}

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

#[cfg(test)]
mod tests {
    //! The auto-associative head beside the read-out: its shapes, its agreement with a single
    //! step for every cell and kernel, its names on disk, and the state size it reconstructs.
    use candle_core::{DType, Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::SequenceModel;
    use crate::config::{
        Activation, AutoAssoc, CellKind, CtOptions, Kernel, ModelConfig, RnnConfig,
    };
    use crate::params::ParamStore;

    const F: usize = 3;
    const H: usize = 5;
    const C: usize = 4;

    fn config(
        cell: CellKind,
        layers: usize,
        kernel: Kernel,
        head: Option<AutoAssoc>,
    ) -> ModelConfig {
        let ct = CtOptions {
            backbone_units: 6,
            ode_unfolds: 2,
            ..CtOptions::default()
        };
        let mut c = ModelConfig::new(
            RnnConfig {
                cell,
                input_size: F,
                hidden_size: H,
                num_layers: layers,
                activation: Activation::Tanh,
                ct,
                kernel,
                reservoir: Default::default(),
                threads: Some(1),
            },
            C,
        );
        c.autoassoc = head;
        c
    }

    fn layers_of(cell: CellKind) -> usize {
        if cell.is_ncps() {
            1
        } else {
            2
        }
    }

    fn input(b: usize, t: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..b * t * F)
            .map(|_| rng.random_range(-1.5..1.5))
            .collect();
        Tensor::from_vec(v, (b, t, F), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        values(a)
            .iter()
            .zip(values(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn every_cell_reconstructs_every_step_and_one_step_matches_the_sequence() {
        let dev = Device::Cpu;
        let x = input(2, 4, 11);
        for cell in CellKind::ALL {
            for head in [AutoAssoc::Input, AutoAssoc::InputAndState] {
                let what = format!("{cell} {head:?}");
                let cfg = config(cell, layers_of(cell), Kernel::Reference, Some(head));
                let (m, _) = SequenceModel::init(&cfg, 3, DType::F64, &dev).unwrap();
                assert_eq!(m.autoassoc(), Some(head));
                let size = cfg.autoassoc_size();
                let want = match head {
                    AutoAssoc::Input => F,
                    AutoAssoc::InputAndState => F + cfg.state_size(),
                };
                assert_eq!(size, want, "{what}");
                let (y, hs, _) = m.forward_full(&x, None, None).unwrap();
                let r = m.reconstruct(&hs).unwrap();
                assert_eq!(y.dims(), &[2, 4, C], "{what}");
                assert_eq!(r.dims(), &[2, 4, size], "{what}");
                // (batch, hidden) outputs reconstruct too.
                let h0 = hs.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
                assert_eq!(m.reconstruct(&h0).unwrap().dims(), &[2, size], "{what}");
                // A step from the zero state on x_0 is step 0 of the sequence.
                let zero = m.rnn_zero_state(2, DType::F64, &dev).unwrap();
                let x0 = x.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
                let (y0, r0, s1) = m.step_autoassoc(&x0, &zero).unwrap();
                let y_seq0 = y.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
                let r_seq0 = r.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
                assert!(max_diff(&y0, &y_seq0) < 1e-10, "{what}: read-out");
                assert!(max_diff(&r0, &r_seq0) < 1e-10, "{what}: reconstruction");
                // And a second step from that state is step 1.
                let x1 = x.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
                let (y1, r1, _) = m.step_autoassoc(&x1, &s1).unwrap();
                let y_seq1 = y.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
                let r_seq1 = r.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
                assert!(max_diff(&y1, &y_seq1) < 1e-10, "{what}: read-out step 1");
                assert!(
                    max_diff(&r1, &r_seq1) < 1e-10,
                    "{what}: reconstruction step 1"
                );
                // The plain step gives the same read-out and state.
                let (y0p, s1p) = m.step(&x0, &zero).unwrap();
                assert!(max_diff(&y0p, &y0) < 1e-12, "{what}");
                assert!(max_diff(&s1p.flatten().unwrap(), &s1.flatten().unwrap()) < 1e-12);
                assert_eq!(
                    s1.flatten().unwrap().dims(),
                    &[2, cfg.state_size()],
                    "{what}"
                );
                // The fused kernel (where the cell has one) reconstructs as the reference does.
                if cell.has_fused_cpu() {
                    let fcfg = config(cell, layers_of(cell), Kernel::Fused, Some(head));
                    let (fm, _) = SequenceModel::init(&fcfg, 3, DType::F64, &dev).unwrap();
                    let (fy, fhs, _) = fm.forward_full(&x, None, None).unwrap();
                    let fr = fm.reconstruct(&fhs).unwrap();
                    assert!(max_diff(&fy, &y) < 1e-10, "{what}: fused read-out");
                    assert!(max_diff(&fr, &r) < 1e-10, "{what}: fused reconstruction");
                    let (fy0, fr0, _) = fm.step_autoassoc(&x0, &zero).unwrap();
                    assert!(max_diff(&fy0, &y_seq0) < 1e-10, "{what}: fused step");
                    assert!(max_diff(&fr0, &r_seq0) < 1e-10, "{what}: fused step");
                }
            }
        }
    }

    #[test]
    fn the_head_sits_beside_the_read_out_and_changes_nothing_else() {
        let dev = Device::Cpu;
        let x = input(3, 5, 2);
        for cell in [CellKind::Lstm, CellKind::Ltc, CellKind::Cfc] {
            let plain = config(cell, 1, Kernel::Reference, None);
            let with = config(cell, 1, Kernel::Reference, Some(AutoAssoc::Input));
            let (a, sa) = SequenceModel::init(&plain, 9, DType::F64, &dev).unwrap();
            let (b, sb) = SequenceModel::init(&with, 9, DType::F64, &dev).unwrap();
            let (ya, _) = a.forward(&x, None, None).unwrap();
            let (yb, _) = b.forward(&x, None, None).unwrap();
            assert_eq!(values(&ya), values(&yb), "{cell}");
            let na: Vec<String> = sa.vars().into_iter().map(|(n, _)| n).collect();
            let mut nb: Vec<String> = sb.vars().into_iter().map(|(n, _)| n).collect();
            nb.retain(|n| !n.starts_with("autoassoc."));
            assert_eq!(na, nb, "{cell}");
        }
    }

    #[test]
    fn the_head_is_named_saved_and_loaded_with_the_model() {
        let dev = Device::Cpu;
        let x = input(2, 3, 5);
        let dir = std::env::temp_dir().join(format!("remanence-autoassoc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (cell, head) in [
            (CellKind::Lstm, AutoAssoc::InputAndState),
            (CellKind::Gru, AutoAssoc::Input),
            (CellKind::Ltc, AutoAssoc::InputAndState),
        ] {
            let cfg = config(cell, layers_of(cell), Kernel::Reference, Some(head));
            let (m, store) = SequenceModel::init(&cfg, 4, DType::F64, &dev).unwrap();
            let hidden_out = m.rnn().config().hidden_size;
            let w = store.get("autoassoc.weight").expect("autoassoc.weight");
            let b = store.get("autoassoc.bias").expect("autoassoc.bias");
            assert_eq!(w.dims(), &[cfg.autoassoc_size(), hidden_out], "{cell}");
            assert_eq!(b.dims(), &[cfg.autoassoc_size()], "{cell}");
            let (_, hs, _) = m.forward_full(&x, None, None).unwrap();
            let r = m.reconstruct(&hs).unwrap();

            // From the store's tensors.
            let loaded = ParamStore::from_tensors(store.tensors(), "memory").unwrap();
            let m2 = SequenceModel::from_store(&cfg, &loaded, DType::F64, &dev).unwrap();
            let (_, hs2, _) = m2.forward_full(&x, None, None).unwrap();
            assert_eq!(values(&m2.reconstruct(&hs2).unwrap()), values(&r), "{cell}");

            // Through a safetensors file.
            let path = dir.join(format!("{cell}.safetensors"));
            crate::io::write(&path, &store.tensors(), None).unwrap();
            let (tensors, _) = crate::io::read(&path, &dev).unwrap();
            assert!(
                tensors.contains_key("autoassoc.weight") && tensors.contains_key("autoassoc.bias")
            );
            let from_file = ParamStore::from_tensors(tensors.clone(), &path).unwrap();
            let m3 = SequenceModel::from_store(&cfg, &from_file, DType::F64, &dev).unwrap();
            let (_, hs3, _) = m3.forward_full(&x, None, None).unwrap();
            assert_eq!(values(&m3.reconstruct(&hs3).unwrap()), values(&r), "{cell}");

            // A config without the head refuses a file that has one (unused tensors), and a
            // config with the head refuses a file without it.
            let plain = config(cell, layers_of(cell), Kernel::Reference, None);
            let extra = ParamStore::from_tensors(tensors.clone(), &path).unwrap();
            let e = SequenceModel::from_store(&plain, &extra, DType::F64, &dev)
                .err()
                .expect("unused head tensors")
                .to_string();
            assert!(e.contains("autoassoc.weight"), "{e}");
            let without: Vec<(String, Tensor)> = tensors
                .into_iter()
                .filter(|(n, _)| !n.starts_with("autoassoc."))
                .collect();
            let missing = ParamStore::from_tensors(without, &path).unwrap();
            let e = SequenceModel::from_store(&cfg, &missing, DType::F64, &dev)
                .err()
                .expect("missing head tensors")
                .to_string();
            assert!(e.contains("autoassoc"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_model_without_the_head_cannot_reconstruct() {
        let dev = Device::Cpu;
        let cfg = config(CellKind::Gru, 1, Kernel::Reference, None);
        assert_eq!(cfg.autoassoc_size(), 0);
        let (m, store) = SequenceModel::init(&cfg, 1, DType::F64, &dev).unwrap();
        assert_eq!(m.autoassoc(), None);
        assert!(store.get("autoassoc.weight").is_none());
        let x = input(2, 3, 1);
        let (_, hs, _) = m.forward_full(&x, None, None).unwrap();
        let e = m.reconstruct(&hs).unwrap_err().to_string();
        assert!(e.contains("auto-associative"), "{e}");
        let zero = m.rnn_zero_state(2, DType::F64, &dev).unwrap();
        let x0 = x.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
        assert!(m.step_autoassoc(&x0, &zero).is_err());
    }

    #[test]
    fn the_state_size_counts_every_layer_and_the_cell_state() {
        let dev = Device::Cpu;
        let mut lstm = config(CellKind::Lstm, 2, Kernel::Reference, None);
        lstm.rnn.hidden_size = 4;
        assert_eq!(lstm.state_size(), 2 * 2 * 4);
        let mut gru = lstm.clone();
        gru.rnn.cell = CellKind::Gru;
        assert_eq!(gru.state_size(), 2 * 4);
        let mut srn = gru.clone();
        srn.rnn.cell = CellKind::Srn;
        srn.rnn.num_layers = 3;
        assert_eq!(srn.state_size(), 3 * 4);
        lstm.autoassoc = Some(AutoAssoc::InputAndState);
        assert_eq!(lstm.autoassoc_size(), F + 16);
        lstm.autoassoc = Some(AutoAssoc::Input);
        assert_eq!(lstm.autoassoc_size(), F);
        // The flattened state of a model has exactly that many values.
        for cfg in [&lstm, &gru, &srn] {
            let (m, _) = SequenceModel::init(cfg, 0, DType::F64, &dev).unwrap();
            let (_, last) = m.forward(&input(2, 3, 8), None, None).unwrap();
            assert_eq!(last.flatten().unwrap().dims(), &[2, cfg.state_size()]);
        }
    }
}

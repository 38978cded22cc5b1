//! A-GEM, averaged gradient episodic memory (Chaudhry et al. 2019, "Efficient lifelong learning
//! with A-GEM").
//!
//! The memory is the class-balanced [`ReplayBuffer`]: at most `per_class` training sequences of
//! each class seen, added after each experience. At every step of a later experience a reference
//! batch of `batch` sequences is drawn from it (all of them when it holds fewer), and the
//! gradient `g_ref` of the ordinary task loss on that batch is computed through the model's
//! forward and backward. The step's gradient `g` is then kept if `gᵀg_ref ≥ 0` (to first order
//! the step does not raise the memory's loss) and otherwise replaced by its projection
//!
//! ```text
//! g̃ = g − (gᵀg_ref / g_refᵀg_ref) · g_ref,        so that g̃ᵀg_ref = 0,
//! ```
//!
//! with the dot products taken over all parameters together (the flattened gradient). The
//! projection runs before clipping and the optimizer's update; the memory is not trained on.
//!
//! In a task-incremental scenario (`split-task`) the reference loss is taken on the read-out
//! masked to each memory sequence's own group ([`TaskMask::apply`]), the loss those sequences
//! were trained on.
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use remanence_tasks::Batch;
use remanence_train::learner::{Plugin, StepContext};

use crate::error::{ContinualError, Result};
use crate::replay::ReplayBuffer;
use crate::task_il::TaskMask;

/// `Σ_i aᵢ·bᵢ` over the parameters where both gradients exist, in f64.
fn dot(a: &[Option<Tensor>], b: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0.0;
    for (x, y) in a.iter().zip(b) {
        if let (Some(x), Some(y)) = (x, y) {
            let p = (x.to_dtype(DType::F64)? * y.to_dtype(DType::F64)?)?.sum_all()?;
            total += p.to_scalar::<f64>()?;
        }
    }
    Ok(total)
}

/// What [`project`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// `gᵀg_ref` before the projection.
    pub dot: f64,
    /// `g_refᵀg_ref`.
    pub ref_sq: f64,
    /// Whether `g` was changed (`gᵀg_ref < 0` and `g_ref ≠ 0`).
    pub projected: bool,
}

/// A-GEM's rule on gradients given per parameter (`None`: no gradient, read as zero): if
/// `gᵀg_ref < 0`, `g ← g − (gᵀg_ref / g_refᵀg_ref)·g_ref`; otherwise `g` is left as it is.
pub fn project(grads: &mut [Option<Tensor>], reference: &[Option<Tensor>]) -> Result<Projection> {
    if grads.len() != reference.len() {
        return Err(ContinualError::Config(format!(
            "A-GEM: {} gradients against {} reference gradients",
            grads.len(),
            reference.len()
        )));
    }
    let d = dot(grads, reference)?;
    let ref_sq = dot(reference, reference)?;
    let projected = d < 0.0 && ref_sq > 0.0 && d.is_finite() && ref_sq.is_finite();
    if projected {
        let coef = d / ref_sq;
        for (g, r) in grads.iter_mut().zip(reference) {
            let Some(r) = r else { continue };
            let step = r.affine(coef, 0.0)?;
            *g = Some(match g.take() {
                Some(g) => {
                    let step = step.to_dtype(g.dtype())?;
                    (g - step)?
                }
                None => step.neg()?,
            });
        }
    }
    Ok(Projection {
        dot: d,
        ref_sq,
        projected,
    })
}

/// Projects each step's gradient against the gradient on a reference batch from the memory.
pub struct AgemPlugin {
    buffer: Arc<Mutex<ReplayBuffer>>,
    batch: usize,
    /// Task-incremental: the mask of the scenario's groups, applied to the reference read-out.
    mask: Option<Arc<TaskMask>>,
    /// The dtype and device of the step's batch (recorded in `prepare`; the reference batch is
    /// built alike).
    like: Option<(DType, Device)>,
    /// Steps seen and steps whose gradient was projected (diagnostics).
    pub steps: usize,
    pub projected: usize,
}

impl AgemPlugin {
    /// A-GEM over `buffer`, with reference batches of `batch` sequences.
    pub fn new(buffer: Arc<Mutex<ReplayBuffer>>, batch: usize) -> Self {
        Self {
            buffer,
            batch,
            mask: None,
            like: None,
            steps: 0,
            projected: 0,
        }
    }

    /// The same with the reference loss taken on the read-out masked by `mask` (task-incremental
    /// scenarios; `None`: one head, nothing masked).
    pub fn with_mask(mut self, mask: Option<Arc<TaskMask>>) -> Self {
        self.mask = mask;
        self
    }

    /// The gradient of the task loss on a reference batch from the memory (on the masked
    /// read-out when the plugin has a mask), one entry per `ctx.vars`; `None` while the memory is
    /// empty.
    pub fn reference_gradient(&mut self, ctx: &StepContext) -> Result<Option<Vec<Option<Tensor>>>> {
        let (dtype, device) = match &self.like {
            Some((d, dev)) => (*d, dev.clone()),
            None => match ctx.vars.first() {
                Some((_, v)) => (v.dtype(), v.device().clone()),
                None => return Ok(None),
            },
        };
        let drawn = self
            .buffer
            .lock()
            .expect("A-GEM memory")
            .draw(self.batch, dtype, &device)?;
        let Some(reference) = drawn else {
            return Ok(None);
        };
        let (mut y, _) = ctx
            .model
            .forward(&reference.x, None, reference.dt.as_ref())?;
        if let Some(m) = &self.mask {
            y = m.apply(&reference, ctx.objective, &y)?;
        }
        let l = remanence_train::loss::loss(ctx.objective, &y, &reference)?;
        let grads = l.backward()?;
        Ok(Some(
            ctx.vars
                .iter()
                .map(|(_, v)| grads.get(v.as_tensor()).map(|g| g.detach()))
                .collect(),
        ))
    }
}

impl Plugin for AgemPlugin {
    fn prepare(
        &mut self,
        _ctx: &StepContext,
        batch: &Batch,
    ) -> remanence_train::Result<Option<Batch>> {
        self.like = Some((batch.x.dtype(), batch.x.device().clone()));
        Ok(None)
    }

    fn transform_gradients(
        &mut self,
        ctx: &StepContext,
        grads: &mut [Option<Tensor>],
    ) -> remanence_train::Result<()> {
        self.steps += 1;
        let Some(reference) = self.reference_gradient(ctx).map_err(to_train)? else {
            return Ok(());
        };
        if project(grads, &reference).map_err(to_train)?.projected {
            self.projected += 1;
        }
        Ok(())
    }
}

fn to_train(e: ContinualError) -> remanence_train::TrainError {
    match e {
        ContinualError::Train(t) => t,
        e => remanence_train::TrainError::Config(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig, SequenceModel};
    use remanence_tasks::Objective;

    fn t(v: &[f64]) -> Option<Tensor> {
        Some(Tensor::new(v, &Device::Cpu).unwrap())
    }

    fn flat(g: &[Option<Tensor>]) -> Vec<f64> {
        g.iter()
            .flat_map(|x| x.as_ref().unwrap().to_vec1::<f64>().unwrap())
            .collect()
    }

    #[test]
    fn a_conflicting_gradient_is_projected_onto_the_reference_normal_plane() {
        // g = ((1, 2), (−3)), g_ref = ((0, 1), (1)): gᵀg_ref = 2 − 3 = −1, |g_ref|² = 2.
        let mut g = vec![t(&[1.0, 2.0]), t(&[-3.0])];
        let r = vec![t(&[0.0, 1.0]), t(&[1.0])];
        let p = project(&mut g, &r).unwrap();
        assert!(p.projected && p.dot == -1.0 && p.ref_sq == 2.0, "{p:?}");
        // g − (−1/2)·g_ref = (1, 2.5, −2.5).
        let out = flat(&g);
        for (o, w) in out.iter().zip([1.0, 2.5, -2.5]) {
            assert!((o - w).abs() < 1e-12, "{out:?}");
        }
        // Now orthogonal to g_ref, so a second projection changes nothing.
        let d = dot(&g, &r).unwrap();
        assert!(d.abs() < 1e-12, "{d}");
        let again = project(&mut g, &r).unwrap();
        assert!(!again.projected);
        assert_eq!(flat(&g), out);
    }

    #[test]
    fn an_agreeing_or_orthogonal_gradient_is_unchanged() {
        for (gv, rv) in [
            ([1.0, 2.0, 3.0], [0.5, 0.0, 1.0]),
            ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            ([1.0, -1.0, 2.0], [0.0, 0.0, 0.0]),
        ] {
            let mut g = vec![t(&gv[..2]), t(&gv[2..])];
            let r = vec![t(&rv[..2]), t(&rv[2..])];
            let p = project(&mut g, &r).unwrap();
            assert!(!p.projected, "{p:?}");
            assert_eq!(flat(&g), gv.to_vec());
        }
    }

    #[test]
    fn missing_gradients_count_as_zero() {
        // The second parameter has a reference gradient only: g = (−1, 0), g_ref = (1, 1).
        let mut g = vec![t(&[-1.0]), None];
        let r = vec![t(&[1.0]), t(&[1.0])];
        let p = project(&mut g, &r).unwrap();
        assert!(p.projected && p.dot == -1.0 && p.ref_sq == 2.0);
        // (−1, 0) + ½ (1, 1) = (−½, ½).
        assert_eq!(flat(&g), vec![-0.5, 0.5]);
        let mut short = vec![t(&[1.0])];
        assert!(project(&mut short, &r).is_err());
    }

    #[test]
    fn an_empty_memory_leaves_the_gradients_alone() {
        let cfg = ModelConfig::new(
            RnnConfig {
                cell: CellKind::Gru,
                input_size: 2,
                hidden_size: 4,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                reservoir: Default::default(),
                threads: None,
                kernel: Kernel::Auto,
            },
            3,
        );
        let (model, store) = SequenceModel::init(&cfg, 1, DType::F64, &Device::Cpu).unwrap();
        let vars = store.vars();
        let ctx = StepContext {
            model: &model,
            store: &store,
            vars: &vars,
            objective: Objective::ClassLastStep,
            lr: 0.1,
            epoch: 0,
            batch: 0,
        };
        let buffer = Arc::new(Mutex::new(ReplayBuffer::new(5, 0)));
        let mut plugin = AgemPlugin::new(buffer, 256);
        assert!(plugin.reference_gradient(&ctx).unwrap().is_none());
        let mut grads: Vec<Option<Tensor>> = vars
            .iter()
            .map(|(_, v)| Some(v.as_tensor().ones_like().unwrap().neg().unwrap()))
            .collect();
        let before: Vec<Vec<f64>> = grads
            .iter()
            .map(|g| {
                g.as_ref()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        plugin.transform_gradients(&ctx, &mut grads).unwrap();
        let after: Vec<Vec<f64>> = grads
            .iter()
            .map(|g| {
                g.as_ref()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        assert_eq!(before, after);
        assert_eq!((plugin.steps, plugin.projected), (1, 0));
    }
}

//! Regularisation methods: the model learns each experience with the ordinary gradient step plus
//! a term that holds on to what earlier experiences taught it.
//!
//! - **EWC**, online (Kirkpatrick et al. 2017; Schwarz et al. 2018): after an experience the
//!   diagonal empirical Fisher `F_new = mean over its training batches of (∂L/∂θ)²` is folded
//!   into `F ← decay·F + F_new` (`decay = 1`: plain EWC with the Fishers summed) and
//!   `θ* ← θ`; later experiences add `(λ/2) Σ F (θ − θ*)²`. The gradient is that of the
//!   *batch-mean* task loss, one per training batch (in the order of the training set, the
//!   run's batch size), squared: cheaper than per-sequence gradients, and smaller than the
//!   per-sample Fisher by about the batch size near a minimum, which λ absorbs. It is computed
//!   through the model's ordinary forward and backward, so every cell and kernel gets it.
//! - **SI** (Zenke et al. 2017): during an experience `ω += −g·Δθ` per parameter, `g` the task
//!   loss's gradient at a step (the step's gradient less the gradient of SI's own term) and `Δθ`
//!   the change the update made; at its end `Ω += max(0, ω / ((θ_end − θ_start)² + ξ))` and
//!   `θ* ← θ_end`; later experiences add `c Σ Ω (θ − θ*)²`. The clamp at 0 keeps the term a
//!   bowl: with momentum (Adam) a parameter can move against its gradient and get ω < 0.
//! - **LwF** (Li & Hoiem 2016): after an experience a frozen copy of the model is kept; later
//!   experiences add `α·T²·KL(softmax(z_old/T) ‖ softmax(z_new/T))`, averaged over the batch,
//!   on the class read-out `z` of the current batch (one head: every output is distilled, the
//!   usual class-incremental form).
//!
//! Task-incremental scenarios (`split-task`, [`crate::task_il`]) mask each sequence's read-out to
//! its own group of classes: EWC's Fisher is then the gradient of the *masked* task loss (the
//! loss the experience was trained on), and LwF distils the teacher's read-out masked alike, so
//! the distillation runs within each sequence's group (an unmasked teacher would put probability
//! on classes whose masked student logit is −10⁹, a divergence of about 10⁹).
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var, D};
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::task::class_readout;
use remanence_tasks::{Batch, Objective, SequenceTask, Split};
use remanence_train::learner::{Plugin, StepContext};

use crate::error::{ContinualError, Result};
use crate::task_il::TaskMask;

/// Named tensors, ordered by name.
pub type Named = BTreeMap<String, Tensor>;

/// Copies of the current parameter values (their own storage: the optimizer updates `Var`s in
/// place, and a detached tensor still shares the storage).
pub fn snapshot(vars: &[(String, Var)]) -> Result<Named> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
        .collect()
}

/// `strength · Σ_params Σ importance·(θ − θ*)²` over the parameters that have an importance and an
/// anchor; `None` before the first consolidation.
pub fn quadratic_penalty(
    strength: f64,
    importance: &Named,
    anchor: &Named,
    vars: &[(String, Var)],
) -> Result<Option<Tensor>> {
    if strength == 0.0 || importance.is_empty() {
        return Ok(None);
    }
    let mut total: Option<Tensor> = None;
    for (name, v) in vars {
        let (Some(imp), Some(star)) = (importance.get(name), anchor.get(name)) else {
            continue;
        };
        let d = (v.as_tensor() - star)?;
        let term = (d.sqr()? * imp)?.sum_all()?;
        total = Some(match total {
            None => term,
            Some(t) => (t + term)?,
        });
    }
    Ok(match total {
        Some(t) => Some(t.affine(strength, 0.0)?),
        None => None,
    })
}

/// Online EWC's memory: the accumulated Fisher and the anchor weights.
#[derive(Clone, Debug)]
pub struct Ewc {
    pub lambda: f64,
    pub decay: f64,
    pub fisher: Named,
    pub anchor: Named,
}

impl Ewc {
    pub fn new(lambda: f64, decay: f64) -> Self {
        Self {
            lambda,
            decay,
            fisher: Named::new(),
            anchor: Named::new(),
        }
    }

    /// After an experience: `F ← decay·F + F_new`, `θ* ← params`.
    pub fn consolidate(&mut self, fisher_new: Named, params: Named) -> Result<()> {
        for (name, f) in fisher_new {
            let f = match self.fisher.remove(&name) {
                Some(old) => (old.affine(self.decay, 0.0)? + f)?,
                None => f,
            };
            self.fisher.insert(name, f);
        }
        self.anchor = params;
        Ok(())
    }

    /// `(λ/2) Σ F (θ − θ*)²`.
    pub fn penalty(&self, vars: &[(String, Var)]) -> Result<Option<Tensor>> {
        quadratic_penalty(self.lambda / 2.0, &self.fisher, &self.anchor, vars)
    }
}

/// The diagonal empirical Fisher of `model` on the training sequences of `task`: the mean over
/// batches of `batch_size` sequences of the squared gradient of the batch's task loss. With a
/// task-incremental `mask` the loss is taken on the read-out masked to each sequence's group
/// ([`TaskMask::apply`]), as in training.
pub fn empirical_fisher(
    model: &SequenceModel,
    store: &ParamStore,
    task: &dyn SequenceTask,
    batch_size: usize,
    dtype: DType,
    device: &Device,
    mask: Option<&TaskMask>,
) -> Result<Named> {
    let vars = store.vars();
    let mut sum: Vec<Option<Tensor>> = vec![None; vars.len()];
    let n = task.len(Split::Train);
    let indices: Vec<usize> = (0..n).collect();
    let mut batches = 0usize;
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = task.batch(Split::Train, chunk, dtype, device)?;
        let (mut y, _) = model.forward(&batch.x, None, batch.dt.as_ref())?;
        if let Some(m) = mask {
            y = m.apply(&batch, task.objective(), &y)?;
        }
        let l = remanence_train::loss::loss(task.objective(), &y, &batch)?;
        let grads = l.backward()?;
        for (s, (_, v)) in sum.iter_mut().zip(&vars) {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g2 = g.sqr()?;
                *s = Some(match s.take() {
                    None => g2,
                    Some(acc) => (acc + g2)?,
                });
            }
        }
        batches += 1;
    }
    let mut out = Named::new();
    for (s, (name, v)) in sum.into_iter().zip(&vars) {
        let f = match s {
            Some(s) => s.affine(1.0 / batches.max(1) as f64, 0.0)?,
            None => v.as_tensor().zeros_like()?,
        };
        out.insert(name.clone(), f);
    }
    Ok(out)
}

/// Adds EWC's penalty to the loss (a snapshot of the memory taken before the experience).
pub struct EwcPlugin {
    pub ewc: Ewc,
}

impl Plugin for EwcPlugin {
    fn extra_loss(
        &mut self,
        ctx: &StepContext,
        _batch: &Batch,
        _output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        self.ewc.penalty(ctx.vars).map_err(to_train)
    }
}

/// Synaptic intelligence: the path integral of the current experience and the importances of
/// the past ones.
#[derive(Clone, Debug)]
pub struct Si {
    pub c: f64,
    pub xi: f64,
    /// Ω, accumulated over finished experiences.
    pub omega: Named,
    /// θ* = the weights at the end of the last experience.
    pub anchor: Named,
    /// ω of the current experience.
    pub path: Named,
    /// The weights when the current experience began (recorded at its first step).
    pub start: Option<Named>,
    /// The weights and task gradients of the step in progress (before its update).
    pending: Option<(Named, Named)>,
}

impl Si {
    pub fn new(c: f64, xi: f64) -> Self {
        Self {
            c,
            xi,
            omega: Named::new(),
            anchor: Named::new(),
            path: Named::new(),
            start: None,
            pending: None,
        }
    }

    /// `c Σ Ω (θ − θ*)²`.
    pub fn penalty(&self, vars: &[(String, Var)]) -> Result<Option<Tensor>> {
        quadratic_penalty(self.c, &self.omega, &self.anchor, vars)
    }

    /// Adds `−g·Δθ` of the step in progress, `Δθ` measured against the current weights.
    fn settle(&mut self, vars: &[(String, Var)]) -> Result<()> {
        let Some((before, grads)) = self.pending.take() else {
            return Ok(());
        };
        for (name, v) in vars {
            let (Some(b), Some(g)) = (before.get(name), grads.get(name)) else {
                continue;
            };
            let delta = (v.as_tensor().detach() - b)?;
            let contrib = (g * delta)?.neg()?;
            let w = match self.path.remove(name) {
                Some(w) => (w + contrib)?,
                None => contrib,
            };
            self.path.insert(name.clone(), w);
        }
        Ok(())
    }

    /// Before a step's update: `grads[i]` is the gradient of `vars[i]` of the whole loss (the
    /// task loss plus SI's own term, whose gradient `2cΩ(θ − θ*)` is taken off here).
    pub fn observe(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>]) -> Result<()> {
        self.settle(vars)?;
        let now = snapshot(vars)?;
        if self.start.is_none() {
            self.start = Some(now.clone());
        }
        let mut task = Named::new();
        for ((name, v), g) in vars.iter().zip(grads) {
            let Some(g) = g else { continue };
            let g = match (self.omega.get(name), self.anchor.get(name)) {
                (Some(om), Some(star)) if self.c != 0.0 => {
                    let own = ((v.as_tensor().detach() - star)? * om)?.affine(2.0 * self.c, 0.0)?;
                    (g - own)?
                }
                _ => g.clone(),
            };
            task.insert(name.clone(), g.detach());
        }
        self.pending = Some((now, task));
        Ok(())
    }

    /// At the end of an experience: `Ω += max(0, ω / ((θ_end − θ_start)² + ξ))`, `θ* ← θ_end`.
    pub fn consolidate(&mut self, vars: &[(String, Var)]) -> Result<()> {
        self.settle(vars)?;
        let end = snapshot(vars)?;
        if let Some(start) = self.start.take() {
            for (name, w) in std::mem::take(&mut self.path) {
                let (Some(e), Some(s)) = (end.get(&name), start.get(&name)) else {
                    continue;
                };
                let denom = (e - s)?.sqr()?.affine(1.0, self.xi)?;
                let add = (w / denom)?.relu()?;
                let om = match self.omega.remove(&name) {
                    Some(o) => (o + add)?,
                    None => add,
                };
                self.omega.insert(name, om);
            }
        }
        self.path.clear();
        self.anchor = end;
        Ok(())
    }
}

/// Adds SI's penalty and records the path integral (the memory is shared with the method's
/// state, which consolidates it after the experience).
pub struct SiPlugin {
    pub si: Arc<Mutex<Si>>,
}

impl Plugin for SiPlugin {
    fn extra_loss(
        &mut self,
        ctx: &StepContext,
        _batch: &Batch,
        _output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        self.si
            .lock()
            .expect("si state")
            .penalty(ctx.vars)
            .map_err(to_train)
    }

    fn transform_gradients(
        &mut self,
        ctx: &StepContext,
        grads: &mut [Option<Tensor>],
    ) -> remanence_train::Result<()> {
        self.si
            .lock()
            .expect("si state")
            .observe(ctx.vars, grads)
            .map_err(to_train)
    }
}

/// `α·T²·KL(softmax(old/T) ‖ softmax(new/T))`, averaged over the rows of the logits (batch,
/// classes); `old` is treated as a constant.
pub fn distillation(old: &Tensor, new: &Tensor, alpha: f64, temperature: f64) -> Result<Tensor> {
    let t = 1.0 / temperature;
    let log_p_old = candle_nn::ops::log_softmax(&old.detach().affine(t, 0.0)?, D::Minus1)?;
    let log_p_new = candle_nn::ops::log_softmax(&new.affine(t, 0.0)?, D::Minus1)?;
    let kl = (log_p_old.exp()? * (&log_p_old - &log_p_new)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    Ok(kl.affine(alpha * temperature * temperature, 0.0)?)
}

/// A frozen copy of `store`'s weights as a model of `config`.
pub fn frozen_copy(
    config: &remanence_cells::ModelConfig,
    store: &ParamStore,
    dtype: DType,
    device: &Device,
) -> Result<SequenceModel> {
    let copies = store
        .tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.copy()?)))
        .collect::<Result<Vec<_>>>()?;
    let frozen = ParamStore::from_tensors(copies, "lwf-teacher")?;
    Ok(SequenceModel::from_store(config, &frozen, dtype, device)?)
}

/// Learning without forgetting: distils the model of the last experience into the current one.
pub struct LwfPlugin {
    pub teacher: Arc<Mutex<SequenceModel>>,
    pub alpha: f64,
    pub temperature: f64,
    /// Task-incremental: the mask the learner's read-out went through
    /// ([`crate::task_il::TaskIlPlugin`]). `None`: one head, nothing masked.
    pub mask: Option<Arc<TaskMask>>,
    /// Task-incremental: the groups (heads) of the experiences before this one. Each is
    /// distilled on its own softmax, on the current batch (Li & Hoiem's multi-head LwF: the old
    /// tasks' heads keep answering as they did); the current group is the task loss's.
    pub old_groups: Vec<usize>,
}

impl LwfPlugin {
    /// The distillation term for `batch` given the learner's read-out `output` (B, T, classes):
    /// with one head, α T² KL over every class. Task-incremental (a mask): with old groups, the
    /// mean over them of α T² KL over each old group's classes, between the teacher's and the
    /// learner's unmasked read-outs (one more forward pass of `model`); with none, the teacher's
    /// read-out masked like `output`.
    pub fn term(
        &self,
        model: &SequenceModel,
        batch: &Batch,
        output: &Tensor,
        objective: Objective,
    ) -> Result<Tensor> {
        if !matches!(
            objective,
            Objective::ClassLastStep | Objective::ClassMeanOverTime
        ) {
            return Err(ContinualError::Config(format!(
                "lwf distils a class read-out; objective {objective:?} has none"
            )));
        }
        let (mut y_old, _) =
            self.teacher
                .lock()
                .expect("lwf teacher")
                .forward(&batch.x, None, batch.dt.as_ref())?;
        if let Some(m) = &self.mask {
            if !self.old_groups.is_empty() {
                // The learner's read-out of the old heads, unmasked (the batch's own mask hides them).
                let (y_new, _) = model.forward(&batch.x, None, batch.dt.as_ref())?;
                let old =
                    class_readout(&y_old.detach(), &batch.lengths, objective)?.contiguous()?;
                let new = class_readout(&y_new, &batch.lengths, objective)?.contiguous()?;
                let mut total: Option<Tensor> = None;
                for &g in &self.old_groups {
                    let idx: Vec<u32> = m.classes_of_group(g).iter().map(|&c| c as u32).collect();
                    let idx = Tensor::new(idx.as_slice(), old.device())?;
                    let term = distillation(
                        &old.index_select(&idx, 1)?,
                        &new.index_select(&idx, 1)?,
                        self.alpha,
                        self.temperature,
                    )?;
                    total = Some(match total {
                        Some(t) => (t + term)?,
                        None => term,
                    });
                }
                let total = total.expect("at least one old group");
                return Ok((total / self.old_groups.len() as f64)?);
            }
            y_old = m.apply(batch, objective, &y_old)?;
        }
        let old = class_readout(&y_old.detach(), &batch.lengths, objective)?;
        let new = class_readout(output, &batch.lengths, objective)?;
        distillation(&old, &new, self.alpha, self.temperature)
    }
}

impl Plugin for LwfPlugin {
    fn extra_loss(
        &mut self,
        ctx: &StepContext,
        batch: &Batch,
        output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        if self.alpha == 0.0 {
            return Ok(None);
        }
        self.term(ctx.model, batch, output, ctx.objective)
            .map(Some)
            .map_err(to_train)
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
    use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};

    fn var(name: &str, v: &[f64]) -> (String, Var) {
        (
            name.to_string(),
            Var::from_tensor(&Tensor::new(v, &Device::Cpu).unwrap()).unwrap(),
        )
    }

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn scalar(x: Option<Tensor>) -> f64 {
        x.map(|t| t.to_scalar::<f64>().unwrap()).unwrap_or(0.0)
    }

    fn vec1(x: &Tensor) -> Vec<f64> {
        x.to_vec1::<f64>().unwrap()
    }

    #[test]
    fn ewc_penalty_is_the_formula_and_zero_at_the_anchor() {
        let vars = vec![var("a", &[1.0, 2.0]), var("b", &[-1.0])];
        let mut ewc = Ewc::new(4.0, 1.0);
        assert!(ewc.penalty(&vars).unwrap().is_none());
        ewc.consolidate(
            Named::from([("a".into(), t(&[0.5, 3.0])), ("b".into(), t(&[2.0]))]),
            snapshot(&vars).unwrap(),
        )
        .unwrap();
        // Right after the experience θ = θ*.
        assert_eq!(scalar(ewc.penalty(&vars).unwrap()), 0.0);
        // Move: a → (2, 1.5), b → 0.
        vars[0].1.set(&t(&[2.0, 1.5])).unwrap();
        vars[1].1.set(&t(&[0.0])).unwrap();
        // The anchor is a copy, not the live weights.
        assert_eq!(vec1(&ewc.anchor["a"]), vec![1.0, 2.0]);
        // (λ/2)·(0.5·1² + 3·0.5² + 2·1²) = 2·(0.5 + 0.75 + 2) = 6.5
        let p = scalar(ewc.penalty(&vars).unwrap());
        assert!((p - 6.5).abs() < 1e-12, "{p}");
        // Its gradient is λ F (θ − θ*).
        let g = ewc.penalty(&vars).unwrap().unwrap().backward().unwrap();
        let ga = vec1(g.get(vars[0].1.as_tensor()).unwrap());
        assert!(
            (ga[0] - 4.0 * 0.5 * 1.0).abs() < 1e-12 && (ga[1] - 4.0 * 3.0 * -0.5).abs() < 1e-12
        );
    }

    #[test]
    fn online_ewc_decays_the_old_fisher_and_moves_the_anchor() {
        let vars = vec![var("a", &[1.0])];
        let mut ewc = Ewc::new(1.0, 0.5);
        ewc.consolidate(
            Named::from([("a".into(), t(&[2.0]))]),
            snapshot(&vars).unwrap(),
        )
        .unwrap();
        vars[0].1.set(&t(&[3.0])).unwrap();
        ewc.consolidate(
            Named::from([("a".into(), t(&[1.0]))]),
            snapshot(&vars).unwrap(),
        )
        .unwrap();
        // F = 0.5·2 + 1 = 2, θ* = 3.
        assert_eq!(vec1(&ewc.fisher["a"]), vec![2.0]);
        assert_eq!(vec1(&ewc.anchor["a"]), vec![3.0]);
        ewc.consolidate(
            Named::from([("a".into(), t(&[4.0]))]),
            snapshot(&vars).unwrap(),
        )
        .unwrap();
        assert_eq!(vec1(&ewc.fisher["a"]), vec![5.0]);
        // decay 1: plain summed EWC.
        let mut plain = Ewc::new(1.0, 1.0);
        for f in [2.0, 1.0, 4.0] {
            plain
                .consolidate(
                    Named::from([("a".into(), t(&[f]))]),
                    snapshot(&vars).unwrap(),
                )
                .unwrap();
        }
        assert_eq!(vec1(&plain.fisher["a"]), vec![7.0]);
    }

    #[test]
    fn si_importance_is_the_normalised_path_integral_nonnegative_and_zero_when_untouched() {
        // Parameter "a" follows its gradient, "b" moves against it (ω < 0), "c" never moves and
        // has a zero gradient.
        let vars = vec![var("a", &[0.0, 0.0]), var("b", &[0.0]), var("c", &[5.0])];
        let mut si = Si::new(1.0, 0.1);
        let steps: [([f64; 2], f64, [f64; 2], f64); 2] = [
            ([1.0, -2.0], 1.0, [-0.1, 0.2], 0.1),
            ([0.5, -1.0], 1.0, [-0.1, 0.3], 0.2),
        ];
        for (ga, gb, da, db) in steps {
            let grads = vec![Some(t(&ga)), Some(t(&[gb])), Some(t(&[0.0]))];
            si.observe(&vars, &grads).unwrap();
            let a = vec1(vars[0].1.as_tensor());
            vars[0].1.set(&t(&[a[0] + da[0], a[1] + da[1]])).unwrap();
            let b = vec1(vars[1].1.as_tensor())[0];
            vars[1].1.set(&t(&[b + db])).unwrap();
        }
        si.consolidate(&vars).unwrap();
        // a: ω = (0.1 + 0.05, 0.4 + 0.3), Δ = (−0.2, 0.5).
        let om_a = vec1(&si.omega["a"]);
        let want = [0.15 / (0.04 + 0.1), 0.7 / (0.25 + 0.1)];
        for (o, w) in om_a.iter().zip(want) {
            assert!((o - w).abs() < 1e-12, "{om_a:?}");
        }
        assert_eq!(vec1(&si.omega["b"]), vec![0.0]);
        assert_eq!(vec1(&si.omega["c"]), vec![0.0]);
        assert_eq!(vec1(&si.anchor["a"]), vec![-0.2, 0.5]);
        // At the anchor the penalty is zero; moving "a" costs c Σ Ω Δ².
        assert_eq!(scalar(si.penalty(&vars).unwrap()), 0.0);
        vars[0].1.set(&t(&[0.8, 0.5])).unwrap();
        let p = scalar(si.penalty(&vars).unwrap());
        assert!((p - om_a[0]).abs() < 1e-12, "{p}");
    }

    #[test]
    fn si_takes_its_own_term_off_the_gradient() {
        let vars = vec![var("a", &[1.0])];
        let mut si = Si::new(2.0, 0.1);
        si.omega.insert("a".into(), t(&[3.0]));
        si.anchor.insert("a".into(), t(&[0.0]));
        // Whole-loss gradient 13 = task 1 + 2·c·Ω·(θ − θ*) = 1 + 12.
        si.observe(&vars, &[Some(t(&[13.0]))]).unwrap();
        vars[0].1.set(&t(&[0.5])).unwrap();
        si.settle(&vars).unwrap();
        assert!((vec1(&si.path["a"])[0] - 0.5).abs() < 1e-12);
    }

    fn tiny_model() -> (SequenceModel, ParamStore, ModelConfig) {
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
        let (m, s) = SequenceModel::init(&cfg, 1, DType::F64, &Device::Cpu).unwrap();
        (m, s, cfg)
    }

    fn batch() -> Batch {
        let x: Vec<f64> = (0..2 * 3 * 2)
            .map(|i| ((i * 7) % 5) as f64 * 0.3 - 0.6)
            .collect();
        Batch {
            x: Tensor::from_vec(x, (2, 3, 2), &Device::Cpu).unwrap(),
            target: Tensor::new(&[0u32, 2], &Device::Cpu).unwrap(),
            mask: None,
            dt: None,
            indices: vec![0, 1],
            lengths: vec![3, 2],
        }
    }

    #[test]
    fn lwf_is_zero_for_the_same_model_and_positive_once_it_moved() {
        let (model, store, cfg) = tiny_model();
        let teacher = frozen_copy(&cfg, &store, DType::F64, &Device::Cpu).unwrap();
        let plugin = LwfPlugin {
            teacher: Arc::new(Mutex::new(teacher)),
            alpha: 1.0,
            temperature: 1.5,
            mask: None,
            old_groups: Vec::new(),
        };
        let b = batch();
        let obj = Objective::ClassLastStep;
        let y = model.forward(&b.x, None, None).unwrap().0;
        let same = plugin
            .term(&model, &b, &y, obj)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(same.abs() < 1e-12, "{same}");
        // Change the live weights: the teacher is a copy and stays as it was.
        for (_, v) in store.vars() {
            let moved = v.as_tensor().affine(1.5, 0.1).unwrap();
            v.set(&moved).unwrap();
        }
        let y = model.forward(&b.x, None, None).unwrap().0;
        let term = plugin.term(&model, &b, &y, obj).unwrap();
        assert!(term.to_scalar::<f64>().unwrap() > 1e-6);
        // The gradient reaches the learner's weights only.
        let g = term.backward().unwrap();
        assert!(store
            .vars()
            .iter()
            .any(|(_, v)| g.get(v.as_tensor()).is_some()));
        // The formula on hand-set logits: α T² Σ p (log p − log q).
        let old = t(&[0.0, 1.0]).unsqueeze(0).unwrap();
        let new = t(&[1.0, 0.0]).unsqueeze(0).unwrap();
        let d = distillation(&old, &new, 2.0, 1.0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let p1 = 1.0 / (1.0 + (-1.0f64).exp());
        let want = 2.0 * ((1.0 - p1) * ((1.0 - p1) / p1).ln() + p1 * (p1 / (1.0 - p1)).ln());
        assert!((d - want).abs() < 1e-12, "{d} {want}");
    }

    #[test]
    fn the_empirical_fisher_is_the_mean_squared_batch_gradient() {
        struct Two;
        impl SequenceTask for Two {
            fn name(&self) -> &str {
                "two"
            }
            fn input_size(&self) -> usize {
                2
            }
            fn output_size(&self) -> usize {
                3
            }
            fn objective(&self) -> Objective {
                Objective::ClassLastStep
            }
            fn len(&self, _: Split) -> usize {
                2
            }
            fn batch(
                &self,
                _: Split,
                idx: &[usize],
                _: DType,
                _: &Device,
            ) -> remanence_tasks::Result<Batch> {
                let b = batch();
                let rows: Vec<Tensor> = idx.iter().map(|&i| b.x.get(i).unwrap()).collect();
                let tg: Vec<u32> = idx.iter().map(|&i| [0u32, 2][i]).collect();
                Ok(Batch {
                    x: Tensor::stack(&rows, 0)?,
                    target: Tensor::new(tg.as_slice(), &Device::Cpu)?,
                    mask: None,
                    dt: None,
                    indices: idx.to_vec(),
                    lengths: vec![3; idx.len()],
                })
            }
            fn evaluate(
                &self,
                _: usize,
                _: DType,
                _: &Device,
                _: &mut remanence_tasks::task::Predict<'_>,
            ) -> remanence_tasks::Result<remanence_tasks::Evaluation> {
                unreachable!()
            }
        }
        let (model, store, _) = tiny_model();
        let f = empirical_fisher(&model, &store, &Two, 1, DType::F64, &Device::Cpu, None).unwrap();
        // By hand: one gradient a sequence, squared, averaged.
        let mut want: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..2 {
            let b = Two
                .batch(Split::Train, &[i], DType::F64, &Device::Cpu)
                .unwrap();
            let y = model.forward(&b.x, None, None).unwrap().0;
            let g = remanence_train::loss::loss(Objective::ClassLastStep, &y, &b)
                .unwrap()
                .backward()
                .unwrap();
            for (n, v) in store.vars() {
                let g2 = g
                    .get(v.as_tensor())
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .flatten_all()
                    .unwrap();
                let e = want.entry(n).or_insert_with(|| vec![0.0; g2.elem_count()]);
                for (w, x) in e.iter_mut().zip(vec1(&g2)) {
                    *w += x / 2.0;
                }
            }
        }
        assert_eq!(f.len(), want.len());
        for (n, w) in want {
            let got = vec1(&f[&n].flatten_all().unwrap());
            for (a, b) in got.iter().zip(&w) {
                assert!((a - b).abs() < 1e-12, "{n}");
            }
            assert!(got.iter().all(|&x| x >= 0.0));
        }
    }
}

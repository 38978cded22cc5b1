//! A network of `N` nodes over `T` steps, driven by `M` inputs, in which every node is *linear in
//! its own weights* (Viéville et al. 2017, RR-9100, §2):
//!
//! `x_n(t) = φ_n0(t) + Σ_{d<D_n} W_nd · φ_nd(t)`,
//!
//! - each weight kernel `φ_nd(t) = f_nd(s(t − δ))` and each fixed term of
//!   `φ_n0(t) = Σ_j c_nj · f_nj(s(t − δ))` reads one *source* `s` (a node, an input, or the
//!   constant 1) at a *delay* `δ`, through a fixed scalar [`Transfer`] `f`;
//! - a node source at delay 0 must have a higher index (`x_n(t)` may read `x_n'(t)` only for
//!   `n' > n`), so a step is computed from the last node down to node 0; a node source at delay
//!   `δ ≥ 1` may be any node (past values). The *efferent* nodes of `x_n'(t')` are thus the
//!   `x_n(t)` with `t' < t ≤ t' + R` (`R` the largest delay), or `t = t'` and `n < n'`;
//! - the initial state is 0: a value before the start of the current segment reads as 0.
//!
//! A non-linear unit such as `x = ζ(α + W x(t−1))` is not linear in `W`; it is *split* into a
//! pre-activation node, linear in its weights, and a node that applies `ζ` to it at delay 0 as a
//! fixed term with no weight (see [`super::units`]). A kernel term's own transfer `f` covers
//! units whose weights multiply a fixed non-linear function of a past value (the
//! integrate-and-fire unit: `W·Υ(x'(t−1))`).
//!
//! A term may carry a *gate*, a second factor read from another source:
//! `f(s(t − δ))·h(s'(t − δ'))` (the same rules for both sources). The reference code's kernels
//! are general functions of past values; a product of two is what the integrate-and-fire unit
//! with a learned sharpness needs (its reset `(1 − ζ(q_n(t)))·x_n(t−1)` multiplies the unit's
//! previous value by a function of its sharpness node, [`super::units::aif_learned`]). Every
//! weight still enters linearly: the product is inside one term.
//!
//! A weight may be *bounded* ([`Network::bounds`]): the estimator projects every candidate onto
//! the bounds (the report handles sign and bound constraints by projection; the reference
//! code clips the integrate-and-fire sharpness to `[0, 100]`).
//!
//! The forward pass costs `O(N·D·T)` and stores `x` (`N × T`).
//!
//! [`Data`] holds the inputs, the observed output nodes with their targets, the per-step weight
//! `κ_t` of the per-unit solves (0 in reset gaps), and the segment starts. Several sequences are
//! concatenated with a reset gap ([`Data::concat`]); the "static" option keeps only the target
//! of each sequence's final step.
use serde::{Deserialize, Serialize};

use super::transfer::Transfer;
use crate::error::{ContinualError, Result};

/// What a kernel term reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Node(usize),
    Input(usize),
    /// The constant 1 (a bias when it carries a weight).
    Const,
}

/// `f(s(t − delay))`, times the gate's `h(s'(t − delay'))` if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub source: Source,
    pub delay: usize,
    pub transfer: Transfer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
}

/// The second factor `h(s'(t − delay))` of a gated term.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub source: Source,
    pub delay: usize,
    pub transfer: Transfer,
}

impl Term {
    pub fn node(k: usize, delay: usize) -> Self {
        Self {
            source: Source::Node(k),
            delay,
            transfer: Transfer::Identity,
            gate: None,
        }
    }
    pub fn input(m: usize, delay: usize) -> Self {
        Self {
            source: Source::Input(m),
            delay,
            transfer: Transfer::Identity,
            gate: None,
        }
    }
    pub fn constant() -> Self {
        Self {
            source: Source::Const,
            delay: 0,
            transfer: Transfer::Identity,
            gate: None,
        }
    }
    pub fn through(mut self, transfer: Transfer) -> Self {
        self.transfer = transfer;
        self
    }
    /// The term multiplied by `transfer(source(t − delay))`.
    pub fn gated(mut self, source: Source, delay: usize, transfer: Transfer) -> Self {
        self.gate = Some(Gate {
            source,
            delay,
            transfer,
        });
        self
    }
    /// The term's sources: its own and its gate's, with their delays.
    pub fn sources(&self) -> impl Iterator<Item = (Source, usize)> {
        std::iter::once((self.source, self.delay)).chain(self.gate.map(|g| (g.source, g.delay)))
    }
}

/// One node: fixed terms `(c, term)` summed into `φ_0`, and one kernel term per weight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub fixed: Vec<(f64, Term)>,
    pub kernels: Vec<Term>,
}

/// The network: nodes and one flat weight vector (node `n`'s weights at `offset(n)..`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    nodes: Vec<Node>,
    offsets: Vec<usize>,
    inputs: usize,
    pub weights: Vec<f64>,
    /// `(weight index, low, high)`: weights kept in `[low, high]` by projection.
    #[serde(default)]
    pub bounds: Vec<(usize, f64, f64)>,
}

/// The node values `x_n(t)` of one forward pass, stored step-major (`x[t·N + n]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub nodes: usize,
    pub steps: usize,
    pub x: Vec<f64>,
}

impl Trajectory {
    pub fn get(&self, n: usize, t: usize) -> f64 {
        self.x[t * self.nodes + n]
    }
}

impl Network {
    /// Checks every source (node and input indices; a delay-0 node source must have a higher
    /// index) and sets all weights to 0.
    pub fn new(nodes: Vec<Node>, inputs: usize) -> Result<Self> {
        let n_nodes = nodes.len();
        for (n, node) in nodes.iter().enumerate() {
            let terms = node.fixed.iter().map(|(_, t)| t).chain(node.kernels.iter());
            for (source, delay) in terms.flat_map(Term::sources) {
                match source {
                    Source::Node(k) if k >= n_nodes => {
                        return Err(cfg(format!("node {n} reads node {k} of {n_nodes}")))
                    }
                    Source::Node(k) if delay == 0 && k <= n => {
                        return Err(cfg(format!(
                            "node {n} reads node {k} at delay 0: same-step sources must have a \
                             higher index"
                        )))
                    }
                    Source::Input(m) if m >= inputs => {
                        return Err(cfg(format!("node {n} reads input {m} of {inputs}")))
                    }
                    _ => {}
                }
            }
        }
        let mut offsets = Vec::with_capacity(n_nodes + 1);
        let mut total = 0;
        for node in &nodes {
            offsets.push(total);
            total += node.kernels.len();
        }
        offsets.push(total);
        Ok(Self {
            nodes,
            offsets,
            inputs,
            weights: vec![0.0; total],
            bounds: Vec::new(),
        })
    }

    /// Keeps weight `index` in `[low, high]` (see [`Network::project`]).
    pub fn bound(&mut self, index: usize, low: f64, high: f64) -> Result<()> {
        if index >= self.weights.len() || low.is_nan() || high.is_nan() || low > high {
            return Err(cfg(format!(
                "bound [{low}, {high}] on weight {index} of {}",
                self.weights.len()
            )));
        }
        self.bounds.push((index, low, high));
        Ok(())
    }

    /// Clips the bounded weights of `w` (laid out as [`Network::weights`]) to their bounds.
    pub fn project(&self, w: &mut [f64]) {
        for &(i, lo, hi) in &self.bounds {
            w[i] = w[i].clamp(lo, hi);
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }
    pub fn n_inputs(&self) -> usize {
        self.inputs
    }
    pub fn n_weights(&self) -> usize {
        self.weights.len()
    }
    /// `D_n`, node `n`'s number of weights.
    pub fn dim(&self, n: usize) -> usize {
        self.offsets[n + 1] - self.offsets[n]
    }
    /// Where node `n`'s weights start in [`Network::weights`].
    pub fn offset(&self, n: usize) -> usize {
        self.offsets[n]
    }
    pub fn node_weights(&self, n: usize) -> &[f64] {
        &self.weights[self.offsets[n]..self.offsets[n + 1]]
    }
    pub fn node_weights_mut(&mut self, n: usize) -> &mut [f64] {
        &mut self.weights[self.offsets[n]..self.offsets[n + 1]]
    }
    /// `R`, the largest delay of any term.
    pub fn max_delay(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|nd| {
                nd.fixed
                    .iter()
                    .map(|(_, t)| t)
                    .chain(nd.kernels.iter())
                    .flat_map(|t| t.sources().map(|(_, d)| d))
            })
            .max()
            .unwrap_or(0)
    }

    /// The raw source value `s(t − δ)` of `term` (before its transfer); 0 before the segment
    /// start.
    pub fn source_value(&self, x: &[f64], data: &Data, term: &Term, t: usize) -> f64 {
        self.read(x, data, term.source, term.delay, t)
    }

    /// `s(t − delay)`; 0 before the segment start.
    pub fn read(&self, x: &[f64], data: &Data, source: Source, delay: usize, t: usize) -> f64 {
        match source {
            Source::Const => 1.0,
            Source::Node(_) => match self.node_index(data, source, delay, t) {
                Some(j) => x[j],
                None => 0.0,
            },
            Source::Input(m) => {
                if t < delay || t - delay < data.seg_start[t] {
                    0.0
                } else {
                    data.inputs[m * data.steps + t - delay]
                }
            }
        }
    }

    /// Where `x_k(t − delay)` sits in a trajectory (`(t − delay)·N + k`), for a node source
    /// inside the current segment; `None` otherwise.
    pub fn node_index(&self, data: &Data, source: Source, delay: usize, t: usize) -> Option<usize> {
        match source {
            Source::Node(k) if t >= delay && t - delay >= data.seg_start[t] => {
                Some((t - delay) * self.nodes.len() + k)
            }
            _ => None,
        }
    }

    /// `f(s(t − δ))`, times the gate's `h(s'(t − δ'))` if any.
    pub fn term_value(&self, x: &[f64], data: &Data, term: &Term, t: usize) -> f64 {
        let v = term.transfer.value(self.source_value(x, data, term, t));
        match &term.gate {
            None => v,
            Some(g) => v * g.transfer.value(self.read(x, data, g.source, g.delay, t)),
        }
    }

    /// The partial derivatives of `term`'s value at step `t` with respect to the node values it
    /// reads: up to two `(index into x, ∂term/∂x_index)` (its source, its gate's source), `None`
    /// where a source is not a node inside the segment. The backward pass multiplies them by the
    /// term's coefficient or weight to get the `β`.
    pub fn term_partials(
        &self,
        x: &[f64],
        data: &Data,
        term: &Term,
        t: usize,
    ) -> [Option<(usize, f64)>; 2] {
        let main = self.node_index(data, term.source, term.delay, t);
        match &term.gate {
            None => [main.map(|j| (j, term.transfer.derivative(x[j]))), None],
            Some(g) => {
                let s = self.source_value(x, data, term, t);
                let gv = self.read(x, data, g.source, g.delay, t);
                [
                    main.map(|j| (j, term.transfer.derivative(s) * g.transfer.value(gv))),
                    self.node_index(data, g.source, g.delay, t)
                        .map(|j| (j, term.transfer.value(s) * g.transfer.derivative(gv))),
                ]
            }
        }
    }

    /// `Φ_nt = φ_n0(t) + Σ_d w_nd φ_nd(t)` on the values `x` with weights `w`: node `n`'s
    /// right-hand side at step `t`.
    pub fn rhs(&self, w: &[f64], x: &[f64], data: &Data, n: usize, t: usize) -> f64 {
        let node = &self.nodes[n];
        let mut v = 0.0;
        for (c, term) in &node.fixed {
            v += c * self.term_value(x, data, term, t);
        }
        let wn = &w[self.offsets[n]..self.offsets[n + 1]];
        for (wd, term) in wn.iter().zip(&node.kernels) {
            v += wd * self.term_value(x, data, term, t);
        }
        v
    }

    /// Calls `f(j, β)` for every `β = ∂Φ_nt/∂x_j ≠ 0`-candidate of node `n` at step `t` (one
    /// call per term and source; a node read by several terms gets several calls).
    pub fn for_each_beta(
        &self,
        w: &[f64],
        x: &[f64],
        data: &Data,
        n: usize,
        t: usize,
        mut f: impl FnMut(usize, f64),
    ) {
        let node = &self.nodes[n];
        let wn = &w[self.offsets[n]..self.offsets[n + 1]];
        let terms = node.fixed.iter().map(|(c, term)| (*c, term));
        for (c, term) in terms.chain(wn.iter().copied().zip(node.kernels.iter())) {
            if c == 0.0 {
                continue;
            }
            for (j, d) in self.term_partials(x, data, term, t).into_iter().flatten() {
                f(j, c * d);
            }
        }
    }

    /// `φ_n0(t)`.
    pub fn fixed_part(&self, x: &[f64], data: &Data, n: usize, t: usize) -> f64 {
        self.nodes[n]
            .fixed
            .iter()
            .map(|(c, term)| c * self.term_value(x, data, term, t))
            .sum()
    }

    /// `(φ_n1(t), …, φ_nD(t))` into `out`.
    pub fn kernels_into(&self, x: &[f64], data: &Data, n: usize, t: usize, out: &mut [f64]) {
        for (o, term) in out.iter_mut().zip(&self.nodes[n].kernels) {
            *o = self.term_value(x, data, term, t);
        }
    }

    /// The forward pass with weights `w` (a vector laid out as [`Network::weights`]).
    pub fn forward_with(&self, w: &[f64], data: &Data) -> Trajectory {
        assert_eq!(w.len(), self.weights.len(), "weight vector length");
        assert_eq!(data.inputs.len(), self.inputs * data.steps, "input length");
        let n_nodes = self.nodes.len();
        let mut x = vec![0.0; n_nodes * data.steps];
        for t in 0..data.steps {
            for n in (0..n_nodes).rev() {
                x[t * n_nodes + n] = self.rhs(w, &x, data, n, t);
            }
        }
        Trajectory {
            nodes: n_nodes,
            steps: data.steps,
            x,
        }
    }

    /// The forward pass with the network's own weights.
    pub fn forward(&self, data: &Data) -> Trajectory {
        self.forward_with(&self.weights, data)
    }
}

fn cfg(msg: String) -> ContinualError {
    ContinualError::Config(msg)
}

/// One sequence: `inputs[m·len + t]`, and the targets of the observed nodes `targets[o·len + t]`
/// (NaN where a node is not observed at that step).
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub len: usize,
    pub inputs: Vec<f64>,
    pub targets: Vec<f64>,
}

/// Inputs, targets and step weights of a (possibly concatenated) run of `steps` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub steps: usize,
    /// `inputs[m·T + t]`.
    pub inputs: Vec<f64>,
    /// The observed nodes (the output nodes, `n < N0` in the report).
    pub observed: Vec<usize>,
    /// `targets[o·T + t]` for `observed[o]`; NaN where not observed.
    pub targets: Vec<f64>,
    /// `κ_t`: 1, or 0 in a reset gap (multiplies the per-unit solve's rows).
    pub kappa: Vec<f64>,
    /// The first step of the segment step `t` belongs to; values before it read as 0.
    pub seg_start: Vec<usize>,
}

impl Data {
    /// One sequence from step 0, every step weighted 1.
    pub fn single(inputs: Vec<f64>, observed: Vec<usize>, targets: Vec<f64>, steps: usize) -> Self {
        assert_eq!(targets.len(), observed.len() * steps, "target length");
        Self {
            steps,
            inputs,
            observed,
            targets,
            kappa: vec![1.0; steps],
            seg_start: vec![0; steps],
        }
    }

    /// Sequences concatenated, each followed by a reset gap of `gap` steps (zero inputs, no
    /// target, `κ = 0`); each sequence starts a new segment (state 0). With `static_only`, only
    /// the target at each sequence's final step is kept ("static" estimation).
    pub fn concat(
        seqs: &[Sequence],
        inputs: usize,
        observed: Vec<usize>,
        gap: usize,
        static_only: bool,
    ) -> Self {
        let n_obs = observed.len();
        let steps: usize = seqs.iter().map(|s| s.len + gap).sum();
        let mut d = Self {
            steps,
            inputs: vec![0.0; inputs * steps],
            observed,
            targets: vec![f64::NAN; n_obs * steps],
            kappa: vec![0.0; steps],
            seg_start: vec![0; steps],
        };
        let mut t0 = 0;
        for s in seqs {
            assert_eq!(s.inputs.len(), inputs * s.len, "sequence input length");
            assert_eq!(s.targets.len(), n_obs * s.len, "sequence target length");
            for t in 0..s.len {
                d.kappa[t0 + t] = 1.0;
                d.seg_start[t0 + t] = t0;
                for m in 0..inputs {
                    d.inputs[m * steps + t0 + t] = s.inputs[m * s.len + t];
                }
                if !static_only || t + 1 == s.len {
                    for o in 0..n_obs {
                        d.targets[o * steps + t0 + t] = s.targets[o * s.len + t];
                    }
                }
            }
            for t in s.len..s.len + gap {
                d.seg_start[t0 + t] = t0 + s.len;
            }
            t0 += s.len + gap;
        }
        d
    }

    pub fn target(&self, o: usize, t: usize) -> f64 {
        self.targets[o * self.steps + t]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_same_step_source_of_lower_index() {
        let nodes = vec![
            Node::default(),
            Node {
                fixed: vec![],
                kernels: vec![Term::node(0, 0)],
            },
        ];
        assert!(Network::new(nodes, 0).is_err());
        let nodes = vec![
            Node {
                fixed: vec![],
                kernels: vec![Term::node(1, 0)],
            },
            Node::default(),
        ];
        assert!(Network::new(nodes, 0).is_ok());
    }

    #[test]
    fn forward_of_a_leaky_integrator_and_a_reset() {
        // x(t) = 0.5·x(t−1) + w·i(t−1), with w = 2 and i = 1: x = 0, 2, 3, 3.5, …
        let node = Node {
            fixed: vec![(0.5, Term::node(0, 1))],
            kernels: vec![Term::input(0, 1)],
        };
        let mut net = Network::new(vec![node], 1).unwrap();
        net.weights[0] = 2.0;
        let seq = Sequence {
            len: 4,
            inputs: vec![1.0; 4],
            targets: vec![0.0; 4],
        };
        let data = Data::concat(&[seq.clone(), seq], 1, vec![0], 2, false);
        let x = net.forward(&data);
        let expect = [0.0, 2.0, 3.0, 3.5];
        for (t, e) in expect.iter().enumerate() {
            assert_eq!(x.get(0, t), *e);
            assert_eq!(x.get(0, t + 6), *e, "second sequence restarts from 0");
        }
        assert_eq!(data.kappa[4], 0.0);
        assert!(data.target(0, 5).is_nan());
        let st = Data::concat(
            &[Sequence {
                len: 3,
                inputs: vec![1.0; 3],
                targets: vec![1.0; 3],
            }],
            1,
            vec![0],
            0,
            true,
        );
        assert!(st.target(0, 0).is_nan() && st.target(0, 2) == 1.0);
    }
}

//! A lowered forward pass: the network's structure compiled once into a plan that evaluates its
//! common terms without interpreting them, bit for bit the same as
//! [`Network::forward_with`].
//!
//! [`Network::rhs`] interprets every term of every node at every step: it matches on the term's
//! source, checks the segment, applies the transfer (and the gate). Most terms of the networks of
//! [`super::units`] are plain reads of a node's value (identity transfer, no gate): the
//! recurrent connections `W_nk·x_k(t−1)` of the linear, LNL and sparse ReLU units, the fixed
//! leaks `γ·x_n(t−1)`. The plan groups each node's terms, *in their order*, into
//!
//! - **gathers**: a maximal run of consecutive terms (all fixed, or all kernel terms) that read
//!   nodes with the identity transfer, no gate and the same delay `δ`:
//!   `v += c_i · x[(t − δ)·N + k_i]` for each term `i` of the run, the segment check done once
//!   per run and step (the whole run reads the same step), the coefficients read from the weight
//!   vector (kernel terms, consecutive weights) or from the plan (fixed terms); a run whose
//!   sources are consecutive nodes reads a slice of the trajectory;
//! - **terms**: every other term, through [`Network::term_value`] (the general path).
//!
//! Runs are not regrouped across terms of other kinds or delays: the node's value is the sum of
//! its terms in the order of [`Network::rhs`], one rounding per addition, so the plan adds the
//! same products in the same order and the result is bit-identical (a term outside the segment
//! adds `c·0`, as `rhs` does). The plan depends on the structure only (nodes, terms, offsets),
//! not on the weights: the estimator builds it once and evaluates it at every candidate.
use super::network::{Data, Network, Source, Term, Trajectory};
use super::transfer::Transfer;

/// Where a gather's coefficients are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Coefs {
    /// The weights `w[start..start + len]` (kernel terms).
    Weights(usize),
    /// The plan's fixed coefficients `fixed[start..start + len]` (fixed terms).
    Fixed(usize),
}

/// Which nodes a gather reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sources {
    /// Nodes `first..first + len`.
    Range(usize),
    /// The plan's `nodes[start..start + len]`.
    List(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Gather {
        delay: usize,
        len: usize,
        coefs: Coefs,
        sources: Sources,
    },
    /// A fixed term `c·term`.
    Fixed(f64, Term),
    /// The kernel term of weight `index` (in the full weight vector).
    Kernel(usize, Term),
}

/// The lowered forward pass of one network structure; see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardPlan {
    n_nodes: usize,
    n_weights: usize,
    /// Node `n`'s operations are `ops[node_ops[n]..node_ops[n + 1]]`.
    ops: Vec<Op>,
    node_ops: Vec<usize>,
    fixed: Vec<f64>,
    nodes: Vec<usize>,
}

/// A term a gather can take: a node read, identity transfer, no gate; its node and delay.
fn plain_read(term: &Term) -> Option<(usize, usize)> {
    match (term.source, term.transfer, term.gate) {
        (Source::Node(k), Transfer::Identity, None) => Some((k, term.delay)),
        _ => None,
    }
}

/// One term of a node being lowered: its coefficient (weight index or fixed value) and term.
#[derive(Clone, Copy)]
enum Coef {
    Weight(usize),
    Fixed(f64),
}

impl ForwardPlan {
    /// Lowers `net`'s structure (its weights are not read).
    pub fn new(net: &Network) -> Self {
        let mut plan = Self {
            n_nodes: net.n_nodes(),
            n_weights: net.n_weights(),
            ops: Vec::new(),
            node_ops: vec![0],
            fixed: Vec::new(),
            nodes: Vec::new(),
        };
        for (n, node) in net.nodes().iter().enumerate() {
            let off = net.offset(n);
            let terms: Vec<(Coef, Term)> = node
                .fixed
                .iter()
                .map(|&(c, t)| (Coef::Fixed(c), t))
                .chain(
                    node.kernels
                        .iter()
                        .enumerate()
                        .map(|(d, &t)| (Coef::Weight(off + d), t)),
                )
                .collect();
            let mut i = 0;
            while i < terms.len() {
                let (coef, term) = terms[i];
                let Some((_, delay)) = plain_read(&term) else {
                    plan.ops.push(match coef {
                        Coef::Fixed(c) => Op::Fixed(c, term),
                        Coef::Weight(w) => Op::Kernel(w, term),
                    });
                    i += 1;
                    continue;
                };
                // The run: consecutive plain reads at the same delay with the same kind of
                // coefficient (kernel weights are consecutive in the weight vector).
                let fixed = matches!(coef, Coef::Fixed(_));
                let mut j = i + 1;
                while j < terms.len()
                    && matches!(terms[j].0, Coef::Fixed(_)) == fixed
                    && plain_read(&terms[j].1).is_some_and(|(_, d)| d == delay)
                {
                    j += 1;
                }
                let run = &terms[i..j];
                let ks: Vec<usize> = run
                    .iter()
                    .filter_map(|(_, t)| plain_read(t))
                    .map(|r| r.0)
                    .collect();
                let coefs = match coef {
                    Coef::Weight(w) => Coefs::Weights(w),
                    Coef::Fixed(_) => {
                        let start = plan.fixed.len();
                        plan.fixed.extend(run.iter().map(|(c, _)| match c {
                            Coef::Fixed(c) => *c,
                            Coef::Weight(_) => unreachable!("a run of fixed terms"),
                        }));
                        Coefs::Fixed(start)
                    }
                };
                let contiguous = ks.windows(2).all(|p| p[1] == p[0] + 1);
                let sources = if contiguous {
                    Sources::Range(ks[0])
                } else {
                    let start = plan.nodes.len();
                    plan.nodes.extend_from_slice(&ks);
                    Sources::List(start)
                };
                plan.ops.push(Op::Gather {
                    delay,
                    len: ks.len(),
                    coefs,
                    sources,
                });
                i = j;
            }
            plan.node_ops.push(plan.ops.len());
        }
        plan
    }

    /// The terms evaluated by gathers and by the general path (for reports and tests).
    pub fn counts(&self) -> (usize, usize) {
        self.ops.iter().fold((0, 0), |(g, o), op| match op {
            Op::Gather { len, .. } => (g + len, o),
            _ => (g, o + 1),
        })
    }

    /// `Φ_nt`, node `n`'s right-hand side at step `t`: [`Network::rhs`], bit for bit.
    pub fn rhs(&self, net: &Network, w: &[f64], x: &[f64], data: &Data, n: usize, t: usize) -> f64 {
        let mut v = 0.0;
        for op in &self.ops[self.node_ops[n]..self.node_ops[n + 1]] {
            match *op {
                Op::Gather {
                    delay,
                    len,
                    coefs,
                    sources,
                } => {
                    let cs = match coefs {
                        Coefs::Weights(s) => &w[s..s + len],
                        Coefs::Fixed(s) => &self.fixed[s..s + len],
                    };
                    if t >= delay && t - delay >= data.seg_start[t] {
                        let base = (t - delay) * self.n_nodes;
                        match sources {
                            Sources::Range(k0) => {
                                for (c, xv) in cs.iter().zip(&x[base + k0..base + k0 + len]) {
                                    v += c * xv;
                                }
                            }
                            Sources::List(s) => {
                                for (c, &k) in cs.iter().zip(&self.nodes[s..s + len]) {
                                    v += c * x[base + k];
                                }
                            }
                        }
                    } else {
                        // Before the segment every source reads 0 (`rhs` adds `c·0`).
                        for c in cs {
                            v += c * 0.0;
                        }
                    }
                }
                Op::Fixed(c, ref term) => v += c * net.term_value(x, data, term, t),
                Op::Kernel(i, ref term) => v += w[i] * net.term_value(x, data, term, t),
            }
        }
        v
    }

    /// The forward pass of `net` (the structure this plan was built from) with weights `w`:
    /// [`Network::forward_with`], bit for bit.
    pub fn forward_with(&self, net: &Network, w: &[f64], data: &Data) -> Trajectory {
        assert_eq!(
            (net.n_nodes(), net.n_weights()),
            (self.n_nodes, self.n_weights),
            "the plan of another network"
        );
        assert_eq!(w.len(), self.n_weights, "weight vector length");
        assert_eq!(
            data.inputs.len(),
            net.n_inputs() * data.steps,
            "input length"
        );
        let n_nodes = self.n_nodes;
        let mut x = vec![0.0; n_nodes * data.steps];
        for t in 0..data.steps {
            for n in (0..n_nodes).rev() {
                x[t * n_nodes + n] = self.rhs(net, w, &x, data, n, t);
            }
        }
        Trajectory {
            nodes: n_nodes,
            steps: data.steps,
            x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::network::{Node, Sequence};
    use super::super::units::{
        aif, aif_learned, linear, lnl, randomize, sparse_relu, Leak, LnlSpec,
    };
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Three sequences of random inputs, concatenated with reset gaps of 2 steps.
    fn data(inputs: usize, rng: &mut ChaCha8Rng) -> Data {
        let seqs: Vec<Sequence> = [7, 11, 5]
            .iter()
            .map(|&len| Sequence {
                len,
                inputs: (0..inputs * len)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect(),
                targets: vec![0.0; len],
            })
            .collect();
        Data::concat(&seqs, inputs, vec![0], 2, false)
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn same_forward(net: &Network, what: &str, rng: &mut ChaCha8Rng) {
        let plan = ForwardPlan::new(net);
        let d = data(net.n_inputs(), rng);
        for scale in [0.3, 1.5] {
            let mut w = net.weights.clone();
            for v in w.iter_mut() {
                *v += scale * rng.random_range(-1.0..1.0);
            }
            let a = net.forward_with(&w, &d);
            let b = plan.forward_with(net, &w, &d);
            assert_eq!(bits(&a.x), bits(&b.x), "{what}, scale {scale}");
            assert!(a.x.iter().any(|v| *v != 0.0), "{what}: a trivial run");
        }
        // Non-finite weights propagate the same way (a term outside the segment adds w·0).
        let mut w = net.weights.clone();
        w[0] = f64::INFINITY;
        let (a, b) = (net.forward_with(&w, &d), plan.forward_with(net, &w, &d));
        assert_eq!(bits(&a.x), bits(&b.x), "{what} with an infinite weight");
    }

    #[test]
    fn the_plan_is_the_interpreted_forward_pass_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut nets: Vec<(String, Network)> = Vec::new();
        nets.push(("linear".into(), linear(5, 2, 1).unwrap()));
        for (leak, input_delay) in [
            (Leak::None, 1),
            (Leak::Fixed(0.4), 0),
            (Leak::Adjustable(0.2), 1),
        ] {
            let spec = LnlSpec {
                units: 6,
                inputs: 2,
                a: -1.0,
                b: 1.0,
                leak,
                input_delay,
            };
            nets.push((
                format!("lnl {leak:?} δ={input_delay}"),
                lnl(&spec).unwrap().network,
            ));
        }
        nets.push((
            "sparse relu".into(),
            sparse_relu(9, 1, 0.5, &mut rng).unwrap().0,
        ));
        nets.push(("aif".into(), aif(5, 2, 0.9, 0.1).unwrap()));
        nets.push(("aif learned".into(), aif_learned(4, 1, 0.9, 10.0).unwrap()));
        // Fixed runs, scattered and repeated sources, runs cut by a delay change and by a
        // gated or transferred term, delays of 0 to 3, a constant.
        let nodes = vec![
            Node {
                fixed: vec![
                    (0.5, Term::node(0, 1)),
                    (-0.25, Term::node(3, 1)),
                    (0.1, Term::node(2, 0)),
                    (0.2, Term::node(1, 0)),
                ],
                kernels: vec![
                    Term::node(3, 2),
                    Term::node(1, 2),
                    Term::node(1, 2),
                    Term::node(2, 3),
                    Term::node(1, 1).gated(Source::Node(2), 1, Transfer::Zeta { a: -1.0, b: 1.0 }),
                    Term::node(0, 1),
                    Term::node(1, 1),
                    Term::input(0, 0),
                    Term::constant(),
                ],
            },
            Node {
                fixed: vec![(
                    1.0,
                    Term::node(2, 0).through(Transfer::Zeta { a: -1.0, b: 1.0 }),
                )],
                kernels: vec![Term::node(0, 1), Term::node(3, 1), Term::node(2, 1)],
            },
            Node {
                fixed: vec![],
                kernels: vec![Term::node(3, 0), Term::input(0, 1), Term::node(2, 1)],
            },
            Node {
                fixed: vec![(0.3, Term::node(3, 1))],
                kernels: vec![Term::input(0, 2), Term::constant()],
            },
        ];
        nets.push(("hand-made".into(), Network::new(nodes, 1).unwrap()));
        for (what, mut net) in nets {
            randomize(&mut net, 0.6, &mut rng);
            let plan = ForwardPlan::new(&net);
            let (gathered, general) = plan.counts();
            let total: usize = net
                .nodes()
                .iter()
                .map(|n| n.fixed.len() + n.kernels.len())
                .sum();
            assert_eq!(gathered + general, total, "{what}: every term once");
            if what.starts_with("lnl") || what == "linear" || what == "hand-made" {
                assert!(gathered > 0, "{what}: nothing gathered");
            }
            same_forward(&net, &what, &mut rng);
        }
    }
}

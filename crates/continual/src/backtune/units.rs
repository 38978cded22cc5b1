//! Unit types (RR-9100, appendix A) as builders of [`Network`]s in which every weight enters
//! linearly.
//!
//! - [`linear`]: `x_n(t) = α_n + Σ_k W_nk x_k(t−1) + Σ_m Win_nm i_m(t−δ)`, one node per unit.
//! - [`lnl`], linear–non-linear: `x_n(t) = γ_n x_n(t−1) + ζ_[a,b](p_n(t))` with
//!   `p_n(t) = α_n + Σ_k W_nk x_k(t−1) + Σ_m Win_nm i_m(t−δ)`. `x_n` is not linear in `W`, so the
//!   unit is *split* in two nodes: the pre-activation node `p_n` (index `U + n`), linear in
//!   `(α_n, W_n·, Win_n·)`, and the output node `x_n` (index `n`), whose fixed part is
//!   `1·ζ(p_n(t))`, read at delay 0 (allowed since `U + n > n`), plus the leak. A fixed leak `γ`
//!   is a fixed term `γ·x_n(t−1)`; an adjustable one is the output node's only weight, on the
//!   kernel `x_n(t−1)` (so the output node has `D = 1` and the pre-activation node
//!   `D = 1 + U + M`). The report counts 3 nodes for the adjustable leak; 2 suffice here because
//!   a node may carry both fixed terms and weights. The `U` observable units are nodes
//!   `0..U`, as the report's outputs `n < N0`.
//! - [`sparse_relu`]: the same split with `ζ` replaced by the ReLU saturated at 1e6, a fixed
//!   leak, and a fixed random connectivity of `D = max(2, ⌊√U⌋)` recurrent sources per unit.
//! - [`aif`], integrate-and-fire:
//!   `x_n(t) = γ(1 − Υ_ε(x_n(t−1)))·x_n(t−1) + Σ_k W_nk Υ_ε(x_k(t−1)) + Σ_m Win_nm i_m(t−1)`,
//!   `Υ_ε(v) = ζ_[0,1]((v − ½)/ε)`: already linear in its weights (the
//!   kernels are fixed non-linear functions of past values), so one node per unit; the
//!   sharpness `1/ε` is fixed.
//! - [`aif_learned`], the same unit with a *learned* sharpness `s_n = 1/ε_n` per unit, as the
//!   report's code builds it: the sharpness enters `Υ` non-linearly, so it is split into an
//!   intermediate node `q_n(t) = s_n·(x_n(t−1) − ½)`, linear in its one weight `s_n`, and
//!   `Υ_ε(x_n(t−1)) = ζ_[0,1](q_n(t))` is read from it at delay 0. The unit node is then
//!   `x_n(t) = γ x_n(t−1) − γ x_n(t−1)·ζ_[0,1](q_n(t)) + Σ_k W_nk ζ_[0,1](q_k(t)) + Σ_m Win_nm
//!   i_m(t−1)`; its reset term multiplies two node values, a gated term
//!   ([`super::network::Term::gated`]). Every weight, `s_n` included, enters linearly, so the
//!   sharpness gets the per-unit second-order solve (a one-weight node) as well as the
//!   first-order candidates. It is kept in `[0, 100]` by projection, as the code clips it.
//!
//! **The project's Elman SRN as LNL units.** The SRN of `remanence-cells`
//! (`h(t) = tanh(W_ih x(t) + b_ih + W_hh h(t−1) + b_hh)`, `h(−1) = 0`) is an LNL network with
//! `γ = 0`, `a = −1`, `b = 1` (`ζ_[−1,1] = tanh`), `W = W_hh`, `Win = W_ih`, `α = b_ih + b_hh`
//! (the two biases are not separately identifiable), and the input read at delay `δ = 0`
//! (`i(t) = x(t)`; the report's units read `i(t−1)`, which is the same network on the input
//! sequence shifted by one step). [`srn_as_lnl`] builds it.
use rand::seq::index::sample;
use rand::Rng;

use super::network::{Network, Node, Source, Term};
use super::transfer::Transfer;
use crate::error::Result;

/// A standard normal draw (Box–Muller).
pub fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Sets every weight of `net` to a normal draw of standard deviation `std`.
pub fn randomize<R: Rng>(net: &mut Network, std: f64, rng: &mut R) {
    for w in net.weights.iter_mut() {
        *w = std * normal(rng);
    }
}

/// The leak `γ` of an LNL unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leak {
    /// `γ = 0`.
    None,
    Fixed(f64),
    /// Learned, starting from the value given.
    Adjustable(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LnlSpec {
    pub units: usize,
    pub inputs: usize,
    pub a: f64,
    pub b: f64,
    pub leak: Leak,
    /// `δ`, the delay at which the pre-activation reads the inputs (1 in the report, 0 for the
    /// SRN).
    pub input_delay: usize,
}

/// Where each LNL parameter sits in the network's weight vector.
#[derive(Debug, Clone, PartialEq)]
pub struct LnlLayout {
    pub units: usize,
    pub inputs: usize,
    pub leak: Leak,
}

/// The LNL parameters as matrices: `w[n][k]`, `w_in[n][m]`, `alpha[n]`, `gamma[n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LnlParams {
    pub w: Vec<Vec<f64>>,
    pub w_in: Vec<Vec<f64>>,
    pub alpha: Vec<f64>,
    pub gamma: Vec<f64>,
}

/// A built LNL network and its layout.
#[derive(Debug, Clone)]
pub struct Lnl {
    pub network: Network,
    pub layout: LnlLayout,
}

impl LnlLayout {
    /// Index in the weight vector of the pre-activation node's `d`-th weight of unit `n`
    /// (`d = 0`: α, `1..=U`: W, then Win).
    fn pre(&self, net: &Network, n: usize, d: usize) -> usize {
        net.offset(self.units + n) + d
    }

    pub fn params(&self, net: &Network) -> LnlParams {
        let (u, m) = (self.units, self.inputs);
        let get = |n, d| net.weights[self.pre(net, n, d)];
        LnlParams {
            alpha: (0..u).map(|n| get(n, 0)).collect(),
            w: (0..u)
                .map(|n| (0..u).map(|k| get(n, 1 + k)).collect())
                .collect(),
            w_in: (0..u)
                .map(|n| (0..m).map(|j| get(n, 1 + u + j)).collect())
                .collect(),
            gamma: (0..u)
                .map(|n| match self.leak {
                    Leak::None => 0.0,
                    Leak::Fixed(g) => g,
                    Leak::Adjustable(_) => net.weights[net.offset(n)],
                })
                .collect(),
        }
    }

    /// Writes `p` into `net` (a fixed leak is part of the structure and is not written).
    pub fn set_params(&self, net: &mut Network, p: &LnlParams) {
        let (u, m) = (self.units, self.inputs);
        for n in 0..u {
            let i = self.pre(net, n, 0);
            net.weights[i] = p.alpha[n];
            for k in 0..u {
                net.weights[i + 1 + k] = p.w[n][k];
            }
            for j in 0..m {
                net.weights[i + 1 + u + j] = p.w_in[n][j];
            }
            if let Leak::Adjustable(_) = self.leak {
                let o = net.offset(n);
                net.weights[o] = p.gamma[n];
            }
        }
    }
}

/// `x(t) = γ x(t−1) + f(p(t))` split into output nodes `0..U` and pre-activation nodes
/// `U..2U`, the pre-activation of unit `n` reading `α`, the recurrent sources `sources(n)` at
/// delay 1 and all inputs at `input_delay`.
fn split_units(
    units: usize,
    inputs: usize,
    leak: Leak,
    f: Transfer,
    input_delay: usize,
    sources: impl Fn(usize) -> Vec<usize>,
) -> Result<Network> {
    let mut nodes = Vec::with_capacity(2 * units);
    for n in 0..units {
        let mut node = Node {
            fixed: vec![(1.0, Term::node(units + n, 0).through(f))],
            kernels: vec![],
        };
        match leak {
            Leak::None => {}
            Leak::Fixed(g) => node.fixed.push((g, Term::node(n, 1))),
            Leak::Adjustable(_) => node.kernels.push(Term::node(n, 1)),
        }
        nodes.push(node);
    }
    for n in 0..units {
        let mut kernels = vec![Term::constant()];
        kernels.extend(sources(n).into_iter().map(|k| Term::node(k, 1)));
        kernels.extend((0..inputs).map(|m| Term::input(m, input_delay)));
        nodes.push(Node {
            fixed: vec![],
            kernels,
        });
    }
    let mut net = Network::new(nodes, inputs)?;
    if let Leak::Adjustable(g) = leak {
        for n in 0..units {
            let o = net.offset(n);
            net.weights[o] = g;
        }
    }
    Ok(net)
}

/// An LNL network (weights 0, an adjustable leak at its starting value).
pub fn lnl(spec: &LnlSpec) -> Result<Lnl> {
    let f = Transfer::Zeta {
        a: spec.a,
        b: spec.b,
    };
    let u = spec.units;
    let network = split_units(u, spec.inputs, spec.leak, f, spec.input_delay, |_| {
        (0..u).collect()
    })?;
    Ok(Lnl {
        network,
        layout: LnlLayout {
            units: u,
            inputs: spec.inputs,
            leak: spec.leak,
        },
    })
}

/// A linear network: one node per unit, `x = α + W x(t−1) + Win i(t−δ)`.
pub fn linear(units: usize, inputs: usize, input_delay: usize) -> Result<Network> {
    let nodes = (0..units)
        .map(|_| {
            let mut kernels = vec![Term::constant()];
            kernels.extend((0..units).map(|k| Term::node(k, 1)));
            kernels.extend((0..inputs).map(|m| Term::input(m, input_delay)));
            Node {
                fixed: vec![],
                kernels,
            }
        })
        .collect();
    Network::new(nodes, inputs)
}

/// A sparse ReLU network: output nodes `0..U`, pre-activation nodes `U..2U`; unit `n` reads
/// `max(2, ⌊√U⌋)` distinct random units (returned), all inputs, and a bias.
pub fn sparse_relu<R: Rng>(
    units: usize,
    inputs: usize,
    leak: f64,
    rng: &mut R,
) -> Result<(Network, Vec<Vec<usize>>)> {
    let d = ((units as f64).sqrt().floor() as usize).max(2).min(units);
    let conn: Vec<Vec<usize>> = (0..units)
        .map(|_| {
            let mut s = sample(rng, units, d).into_vec();
            s.sort_unstable();
            s
        })
        .collect();
    let net = split_units(
        units,
        inputs,
        Leak::Fixed(leak),
        Transfer::Relu { cap: 1e6 },
        1,
        |n| conn[n].clone(),
    )?;
    Ok((net, conn))
}

/// An integrate-and-fire network of `U` units (one node each): weights `W_n·` then `Win_n·`.
pub fn aif(units: usize, inputs: usize, gamma: f64, eps: f64) -> Result<Network> {
    let nodes = (0..units)
        .map(|n| {
            let mut kernels: Vec<Term> = (0..units)
                .map(|k| Term::node(k, 1).through(Transfer::Upsilon { eps }))
                .collect();
            kernels.extend((0..inputs).map(|m| Term::input(m, 1)));
            Node {
                fixed: vec![(gamma, Term::node(n, 1).through(Transfer::ResetLeak { eps }))],
                kernels,
            }
        })
        .collect();
    Network::new(nodes, inputs)
}

/// The bounds of a learned integrate-and-fire sharpness (the reference code's).
pub const SHARPNESS_BOUNDS: (f64, f64) = (0.0, 100.0);

/// Integrate-and-fire units with learned sharpness (see the module doc): unit nodes `0..U`
/// with weights `W_n·` then `Win_n·` (as [`aif`]), then sharpness nodes `U..2U`, each with one
/// weight `s_n` set to `sharpness` and bounded to [`SHARPNESS_BOUNDS`]. With `s_n = 1/ε` it
/// computes the same unit values as `aif(units, inputs, gamma, ε)`.
pub fn aif_learned(units: usize, inputs: usize, gamma: f64, sharpness: f64) -> Result<Network> {
    let upsilon = Transfer::Zeta { a: 0.0, b: 1.0 };
    let mut nodes: Vec<Node> = (0..units)
        .map(|n| {
            let mut kernels: Vec<Term> = (0..units)
                .map(|k| Term::node(units + k, 0).through(upsilon))
                .collect();
            kernels.extend((0..inputs).map(|m| Term::input(m, 1)));
            Node {
                fixed: vec![
                    (gamma, Term::node(n, 1)),
                    (
                        -gamma,
                        Term::node(n, 1).gated(Source::Node(units + n), 0, upsilon),
                    ),
                ],
                kernels,
            }
        })
        .collect();
    nodes.extend((0..units).map(|n| Node {
        fixed: vec![],
        kernels: vec![Term::node(n, 1).through(Transfer::Shift { by: -0.5 })],
    }));
    let mut net = Network::new(nodes, inputs)?;
    for n in 0..units {
        let i = net.offset(units + n);
        net.weights[i] = sharpness;
        net.bound(i, SHARPNESS_BOUNDS.0, SHARPNESS_BOUNDS.1)?;
    }
    Ok(net)
}

/// The sharpnesses `s_n` of an [`aif_learned`] network of `units` units.
pub fn sharpness_of(net: &Network, units: usize) -> Vec<f64> {
    (0..units)
        .map(|n| net.weights[net.offset(units + n)])
        .collect()
}

/// The Elman SRN `h(t) = tanh(W_ih x(t) + b_ih + W_hh h(t−1) + b_hh)` as LNL units
/// (`γ = 0`, `[a, b] = [−1, 1]`, input delay 0). `w_ih` is `H × I`, `w_hh` is `H × H`.
pub fn srn_as_lnl(w_ih: &[Vec<f64>], b_ih: &[f64], w_hh: &[Vec<f64>], b_hh: &[f64]) -> Result<Lnl> {
    let h = w_hh.len();
    let i = w_ih.first().map_or(0, Vec::len);
    let mut built = lnl(&LnlSpec {
        units: h,
        inputs: i,
        a: -1.0,
        b: 1.0,
        leak: Leak::None,
        input_delay: 0,
    })?;
    let p = LnlParams {
        w: w_hh.to_vec(),
        w_in: w_ih.to_vec(),
        alpha: b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect(),
        gamma: vec![0.0; h],
    };
    built.layout.set_params(&mut built.network, &p);
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::super::network::{Data, Sequence};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn srn_mapping_reproduces_the_elman_recursion() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (h, i, steps) = (3, 2, 12);
        let mut m = |r: usize, c: usize| -> Vec<Vec<f64>> {
            (0..r)
                .map(|_| (0..c).map(|_| normal(&mut rng)).collect())
                .collect()
        };
        let (w_ih, w_hh) = (m(h, i), m(h, h));
        let (b_ih, b_hh) = (vec![0.1, -0.2, 0.3], vec![0.05, 0.0, -0.1]);
        let xs: Vec<Vec<f64>> = (0..steps)
            .map(|t| vec![(t as f64).sin(), (0.3 * t as f64).cos()])
            .collect();
        let built = srn_as_lnl(&w_ih, &b_ih, &w_hh, &b_hh).unwrap();
        let inputs: Vec<f64> = (0..i).flat_map(|m| xs.iter().map(move |x| x[m])).collect();
        let data = Data::concat(
            &[Sequence {
                len: steps,
                inputs,
                targets: vec![],
            }],
            i,
            vec![],
            0,
            false,
        );
        let traj = built.network.forward(&data);
        let mut hs = vec![0.0; h];
        for (t, x) in xs.iter().enumerate() {
            hs = (0..h)
                .map(|n| {
                    let mut v = b_ih[n] + b_hh[n];
                    v += (0..i).map(|m| w_ih[n][m] * x[m]).sum::<f64>();
                    v += (0..h).map(|k| w_hh[n][k] * hs[k]).sum::<f64>();
                    v.tanh()
                })
                .collect();
            for (n, hn) in hs.iter().enumerate() {
                assert!((traj.get(n, t) - hn).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn layouts_round_trip_and_units_have_their_documented_dimensions() {
        let built = lnl(&LnlSpec {
            units: 3,
            inputs: 2,
            a: -1.0,
            b: 1.0,
            leak: Leak::Adjustable(0.4),
            input_delay: 1,
        })
        .unwrap();
        let mut net = built.network.clone();
        assert_eq!((net.n_nodes(), net.dim(0), net.dim(3)), (6, 1, 1 + 3 + 2));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        randomize(&mut net, 1.0, &mut rng);
        let p = built.layout.params(&net);
        let mut other = built.network.clone();
        built.layout.set_params(&mut other, &p);
        assert_eq!(other.weights, net.weights);

        let (sr, conn) = sparse_relu(16, 1, 0.5, &mut rng).unwrap();
        assert!(conn.iter().all(|c| c.len() == 4));
        assert_eq!(sr.dim(16), 1 + 4 + 1);
        let a = aif(4, 1, 0.9, 0.2).unwrap();
        assert_eq!((a.n_nodes(), a.dim(0)), (4, 5));
        assert_eq!(linear(4, 2, 1).unwrap().dim(2), 7);
    }

    #[test]
    fn learned_sharpness_aif_is_the_fixed_one_at_the_same_sharpness() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (u, steps, eps) = (4, 30, 0.1);
        let mut fixed = aif(u, 1, 0.9, eps).unwrap();
        randomize(&mut fixed, 0.5, &mut rng);
        let mut learned = aif_learned(u, 1, 0.9, 1.0 / eps).unwrap();
        assert_eq!(
            (learned.n_nodes(), learned.dim(0), learned.dim(u)),
            (2 * u, u + 1, 1)
        );
        assert_eq!(learned.offset(u), fixed.n_weights());
        learned.weights[..fixed.n_weights()].copy_from_slice(&fixed.weights);
        assert_eq!(sharpness_of(&learned, u), vec![10.0; u]);
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let data = Data::single(inputs, vec![], vec![], steps);
        let (a, b) = (fixed.forward(&data), learned.forward(&data));
        for t in 0..steps {
            for n in 0..u {
                assert!(
                    (a.get(n, t) - b.get(n, t)).abs() < 1e-13,
                    "unit {n} step {t}"
                );
            }
        }
        // The sharpness is projected onto [0, 100].
        let mut w = learned.weights.clone();
        w[learned.offset(u)] = -3.0;
        w[learned.offset(u + 1)] = 250.0;
        learned.project(&mut w);
        let mut projected = learned.clone();
        projected.weights = w;
        assert_eq!(sharpness_of(&projected, u)[..2], [0.0, 100.0]);
    }

    #[test]
    fn aif_units_fire_and_reset() {
        // One unit driven by a constant input through Win = 0.3, with γ = 1: it integrates, and
        // once past ½ the reset leak pulls it back down.
        let mut net = aif(1, 1, 1.0, 0.05).unwrap();
        net.weights = vec![0.0, 0.3];
        let steps = 20;
        let data = Data::single(vec![1.0; steps], vec![], vec![], steps);
        let traj = net.forward(&data);
        let xs: Vec<f64> = (0..steps).map(|t| traj.get(0, t)).collect();
        assert!(xs.iter().cloned().fold(0.0, f64::max) > 0.5);
        assert!(xs.windows(2).any(|w| w[1] < w[0]), "some reset: {xs:?}");
    }
}

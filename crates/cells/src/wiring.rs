//! Wirings: which neuron connects to which, and with what polarity, for the LTC cell.
//!
//! A wiring of `units` neurons fed by `inputs` sensory channels is two signed adjacency matrices,
//! `adjacency` (units × units, [source, destination]) and `sensory` (inputs × units), with entries
//! −1 (inhibitory), +1 (excitatory) or 0 (no synapse). The first `output_dim` neurons are the
//! motor (output) neurons. The LTC cell uses |adjacency| as its fixed sparsity mask and the
//! adjacency itself as the initial reversal potentials.
//!
//! The generators follow the construction rules of ncps (FullyConnected, Random, NCP, AutoNCP)
//! but draw from our own seeded ChaCha8 stream, so a wiring is reproducible from its seed but is
//! not numpy's. A checkpoint carries its masks, and loading one uses them as they are.
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{CellError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    pub units: usize,
    pub inputs: usize,
    pub output_dim: usize,
    /// Row-major units × units, [source][destination].
    pub adjacency: Vec<i8>,
    /// Row-major inputs × units.
    pub sensory: Vec<i8>,
}

/// How to build a wiring, parsed from (and stored in configurations as) `fully-connected[:OUT]`, `random:SPARSITY[:OUT]`,
/// `auto-ncp:OUT[:SPARSITY]` or `ncp:INTER:COMMAND:MOTOR:SENSORY_FANOUT:INTER_FANOUT:RECURRENT:MOTOR_FANIN`.
#[derive(Debug, Clone, PartialEq)]
pub enum WiringSpec {
    FullyConnected {
        output_dim: Option<usize>,
    },
    Random {
        sparsity: f64,
        output_dim: Option<usize>,
    },
    AutoNcp {
        output_dim: usize,
        sparsity: f64,
    },
    Ncp(NcpSizes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NcpSizes {
    pub inter: usize,
    pub command: usize,
    pub motor: usize,
    pub sensory_fanout: usize,
    pub inter_fanout: usize,
    pub recurrent_command: usize,
    pub motor_fanin: usize,
}

fn bad(msg: impl Into<String>) -> CellError {
    CellError::Config(msg.into())
}

impl WiringSpec {
    pub const HELP: &'static str =
        "fully-connected[:OUT], random:SPARSITY[:OUT], auto-ncp:OUT[:SPARSITY], \
         ncp:INTER:COMMAND:MOTOR:SENSORY_FANOUT:INTER_FANOUT:RECURRENT:MOTOR_FANIN";

    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let int = |p: &str| {
            p.parse::<usize>()
                .map_err(|_| bad(format!("wiring `{s}`: `{p}` is not a whole number")))
        };
        let real = |p: &str| {
            p.parse::<f64>()
                .map_err(|_| bad(format!("wiring `{s}`: `{p}` is not a number")))
        };
        let spec = match parts.as_slice() {
            ["fully-connected"] => WiringSpec::FullyConnected { output_dim: None },
            ["fully-connected", o] => WiringSpec::FullyConnected {
                output_dim: Some(int(o)?),
            },
            ["random", sp] => WiringSpec::Random {
                sparsity: real(sp)?,
                output_dim: None,
            },
            ["random", sp, o] => WiringSpec::Random {
                sparsity: real(sp)?,
                output_dim: Some(int(o)?),
            },
            ["auto-ncp", o] => WiringSpec::AutoNcp {
                output_dim: int(o)?,
                sparsity: 0.5,
            },
            ["auto-ncp", o, sp] => WiringSpec::AutoNcp {
                output_dim: int(o)?,
                sparsity: real(sp)?,
            },
            ["ncp", a, b, c, d, e, f, g] => WiringSpec::Ncp(NcpSizes {
                inter: int(a)?,
                command: int(b)?,
                motor: int(c)?,
                sensory_fanout: int(d)?,
                inter_fanout: int(e)?,
                recurrent_command: int(f)?,
                motor_fanin: int(g)?,
            }),
            _ => {
                return Err(bad(format!(
                    "unknown wiring `{s}`; valid wirings: {}",
                    Self::HELP
                )))
            }
        };
        Ok(spec)
    }

    /// The canonical text of this wiring, which [`WiringSpec::parse`] reads back.
    pub fn text(&self) -> String {
        match self {
            WiringSpec::FullyConnected { output_dim: None } => "fully-connected".into(),
            WiringSpec::FullyConnected {
                output_dim: Some(o),
            } => format!("fully-connected:{o}"),
            WiringSpec::Random {
                sparsity,
                output_dim: None,
            } => format!("random:{sparsity}"),
            WiringSpec::Random {
                sparsity,
                output_dim: Some(o),
            } => format!("random:{sparsity}:{o}"),
            WiringSpec::AutoNcp {
                output_dim,
                sparsity,
            } => format!("auto-ncp:{output_dim}:{sparsity}"),
            WiringSpec::Ncp(n) => format!(
                "ncp:{}:{}:{}:{}:{}:{}:{}",
                n.inter,
                n.command,
                n.motor,
                n.sensory_fanout,
                n.inter_fanout,
                n.recurrent_command,
                n.motor_fanin
            ),
        }
    }

    /// Number of output (motor) neurons for `units` neurons.
    pub fn output_dim(&self, units: usize) -> usize {
        match *self {
            WiringSpec::FullyConnected { output_dim } | WiringSpec::Random { output_dim, .. } => {
                output_dim.unwrap_or(units)
            }
            WiringSpec::AutoNcp { output_dim, .. } => output_dim,
            WiringSpec::Ncp(s) => s.motor,
        }
    }

    /// Builds the wiring for `units` neurons and `inputs` sensory channels.
    pub fn build(&self, units: usize, inputs: usize, seed: u64) -> Result<Wiring> {
        if units == 0 || inputs == 0 {
            return Err(bad("a wiring needs at least one neuron and one input"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5749_5245);
        let check_out = |o: usize| -> Result<usize> {
            if o == 0 || o > units {
                Err(bad(format!(
                    "wiring output size {o} must be between 1 and the {units} units"
                )))
            } else {
                Ok(o)
            }
        };
        match *self {
            WiringSpec::FullyConnected { output_dim } => {
                let out = check_out(output_dim.unwrap_or(units))?;
                let mut w = Wiring::empty(units, inputs, out);
                for v in w.adjacency.iter_mut().chain(w.sensory.iter_mut()) {
                    *v = *[-1i8, 1, 1].choose(&mut rng).unwrap();
                }
                Ok(w)
            }
            WiringSpec::Random {
                sparsity,
                output_dim,
            } => {
                if !(0.0..1.0).contains(&sparsity) {
                    return Err(bad(format!(
                        "random wiring: sparsity {sparsity} must be in [0, 1)"
                    )));
                }
                let out = check_out(output_dim.unwrap_or(units))?;
                let mut w = Wiring::empty(units, inputs, out);
                for m in [&mut w.adjacency, &mut w.sensory] {
                    let keep = (m.len() as f64 * (1.0 - sparsity)).round() as usize;
                    let mut idx: Vec<usize> = (0..m.len()).collect();
                    idx.shuffle(&mut rng);
                    for &i in &idx[..keep] {
                        m[i] = *[-1i8, 1, 1].choose(&mut rng).unwrap();
                    }
                }
                Ok(w)
            }
            WiringSpec::AutoNcp {
                output_dim,
                sparsity,
            } => {
                if output_dim + 2 >= units {
                    return Err(bad(format!(
                        "auto-ncp: output size {output_dim} must be below units − 2 = {} (NCP needs inter and command neurons)",
                        units as i64 - 2
                    )));
                }
                if !(0.1..=1.0).contains(&sparsity) {
                    return Err(bad(format!(
                        "auto-ncp: sparsity {sparsity} must be in [0.1, 1]"
                    )));
                }
                let density = 1.0 - sparsity;
                let rest = units - output_dim;
                let command = ((0.4 * rest as f64) as usize).max(1);
                let inter = rest - command;
                let sizes = NcpSizes {
                    inter,
                    command,
                    motor: output_dim,
                    sensory_fanout: ((inter as f64 * density) as usize).max(1),
                    inter_fanout: ((command as f64 * density) as usize).max(1),
                    recurrent_command: ((command as f64 * density * 2.0) as usize).max(1),
                    motor_fanin: ((command as f64 * density) as usize).max(1),
                };
                ncp(sizes, units, inputs, &mut rng)
            }
            WiringSpec::Ncp(sizes) => ncp(sizes, units, inputs, &mut rng),
        }
    }
}

impl Wiring {
    fn empty(units: usize, inputs: usize, output_dim: usize) -> Self {
        Self {
            units,
            inputs,
            output_dim,
            adjacency: vec![0; units * units],
            sensory: vec![0; inputs * units],
        }
    }

    /// Number of synapses (recurrent, sensory).
    pub fn synapses(&self) -> (usize, usize) {
        let count = |m: &[i8]| m.iter().filter(|&&v| v != 0).count();
        (count(&self.adjacency), count(&self.sensory))
    }
}

/// Neural circuit policy: neurons are [motor | command | inter]; sensory → inter → command
/// (with recurrent command synapses) → motor. Every neuron of a layer is reached.
fn ncp(s: NcpSizes, units: usize, inputs: usize, rng: &mut ChaCha8Rng) -> Result<Wiring> {
    let total = s.inter + s.command + s.motor;
    if total != units {
        return Err(bad(format!(
            "ncp: inter {} + command {} + motor {} = {total} neurons, but the cell has {units} units",
            s.inter, s.command, s.motor
        )));
    }
    if s.inter == 0 || s.command == 0 || s.motor == 0 {
        return Err(bad(
            "ncp: every layer (inter, command, motor) needs at least one neuron",
        ));
    }
    if s.motor >= units {
        return Err(bad(format!(
            "ncp: output size {} must be below the {units} units",
            s.motor
        )));
    }
    let check = |what: &str, v: usize, max: usize| -> Result<()> {
        if v == 0 || v > max {
            Err(bad(format!("ncp: {what} {v} must be between 1 and {max}")))
        } else {
            Ok(())
        }
    };
    check("sensory fan-out", s.sensory_fanout, s.inter)?;
    check("inter fan-out", s.inter_fanout, s.command)?;
    check("motor fan-in", s.motor_fanin, s.command)?;
    let motor: Vec<usize> = (0..s.motor).collect();
    let command: Vec<usize> = (s.motor..s.motor + s.command).collect();
    let inter: Vec<usize> = (s.motor + s.command..units).collect();
    let mut w = Wiring::empty(units, inputs, s.motor);
    let pol = |rng: &mut ChaCha8Rng| if rng.random_bool(0.5) { 1i8 } else { -1 };

    // Sensory → inter, then every inter neuron gets at least one sensory input.
    let mut reached = vec![false; units];
    for src in 0..inputs {
        for &dst in inter.choose_multiple(rng, s.sensory_fanout) {
            w.sensory[src * units + dst] = pol(rng);
            reached[dst] = true;
        }
    }
    let fanin = ((inputs * s.sensory_fanout) / s.inter).clamp(1, inputs);
    for &dst in inter.iter().filter(|&&d| !reached[d]) {
        for src in (0..inputs).collect::<Vec<_>>().choose_multiple(rng, fanin) {
            w.sensory[src * units + dst] = pol(rng);
        }
    }
    // Layer to layer with a guaranteed incoming synapse per destination.
    let connect =
        |from: &[usize], to: &[usize], fanout: usize, w: &mut Wiring, rng: &mut ChaCha8Rng| {
            let mut reached = vec![false; units];
            for &src in from {
                for &dst in to.choose_multiple(rng, fanout) {
                    w.adjacency[src * units + dst] = pol(rng);
                    reached[dst] = true;
                }
            }
            let fanin = ((from.len() * fanout) / to.len()).clamp(1, from.len());
            for &dst in to.iter().filter(|&&d| !reached[d]) {
                for &src in from.choose_multiple(rng, fanin) {
                    w.adjacency[src * units + dst] = pol(rng);
                }
            }
        };
    connect(&inter, &command, s.inter_fanout, &mut w, rng);
    for _ in 0..s.recurrent_command {
        let src = *command.choose(rng).unwrap();
        let dst = *command.choose(rng).unwrap();
        w.adjacency[src * units + dst] = pol(rng);
    }
    // Command → motor: each motor neuron gets `motor_fanin` command inputs, and every command
    // neuron drives at least one motor neuron.
    let mut drives = vec![false; units];
    for &dst in &motor {
        for &src in command.choose_multiple(rng, s.motor_fanin) {
            w.adjacency[src * units + dst] = pol(rng);
            drives[src] = true;
        }
    }
    let fanout = ((s.motor * s.motor_fanin) / s.command).clamp(1, s.motor);
    for &src in command.iter().filter(|&&c| !drives[c]) {
        for &dst in motor.choose_multiple(rng, fanout) {
            w.adjacency[src * units + dst] = pol(rng);
        }
    }
    Ok(w)
}

impl std::fmt::Display for WiringSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::str::FromStr for WiringSpec {
    type Err = CellError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for WiringSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> serde::Deserialize<'de> for WiringSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fully_connected_has_every_synapse_mostly_excitatory() {
        let w = WiringSpec::parse("fully-connected")
            .unwrap()
            .build(30, 4, 1)
            .unwrap();
        assert_eq!(w.synapses(), (900, 120));
        let exc = w.adjacency.iter().filter(|&&v| v == 1).count() as f64 / 900.0;
        assert!((exc - 2.0 / 3.0).abs() < 0.06, "{exc}");
        assert_eq!(w.output_dim, 30);
        assert_eq!(
            w,
            WiringSpec::parse("fully-connected")
                .unwrap()
                .build(30, 4, 1)
                .unwrap(),
            "seeded"
        );
    }

    #[test]
    fn random_keeps_the_asked_share() {
        let w = WiringSpec::parse("random:0.75:3")
            .unwrap()
            .build(20, 5, 2)
            .unwrap();
        assert_eq!(w.synapses(), (100, 25));
        assert_eq!(w.output_dim, 3);
    }

    #[test]
    fn auto_ncp_layers_are_connected_in_order() {
        let w = WiringSpec::parse("auto-ncp:3")
            .unwrap()
            .build(12, 5, 7)
            .unwrap();
        // 12 units, 3 motor: command = int(0.4·9) = 3, inter = 6.
        let (motor, command) = (0..3, 3..6);
        let u = 12;
        for src in 0..u {
            for dst in 0..u {
                if w.adjacency[src * u + dst] != 0 {
                    let ok = (command.contains(&src)
                        && (motor.contains(&dst) || command.contains(&dst)))
                        || (src >= 6 && command.contains(&dst));
                    assert!(ok, "unexpected synapse {src} -> {dst}");
                }
            }
        }
        for s in 0..5 {
            for d in 0..6 {
                assert_eq!(
                    w.sensory[s * u + d],
                    0,
                    "sensory inputs reach only inter neurons"
                );
            }
        }
        // Every motor and command neuron has an input, every inter neuron a sensory input.
        for d in 0..6 {
            assert!(
                (0..u).any(|s| w.adjacency[s * u + d] != 0),
                "neuron {d} unreached"
            );
        }
        for d in 6..12 {
            assert!(
                (0..5).any(|s| w.sensory[s * u + d] != 0),
                "inter {d} unreached"
            );
        }
    }

    #[test]
    fn bad_wirings_are_refused() {
        let e = WiringSpec::parse("auto-ncp:10")
            .unwrap()
            .build(12, 5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("below units"), "{e}");
        let e = WiringSpec::parse("fully-connected:40")
            .unwrap()
            .build(12, 5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1 and the 12 units"), "{e}");
        let e = WiringSpec::parse("ncp:4:3:2:2:2:2:2")
            .unwrap()
            .build(12, 5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("= 9 neurons"), "{e}");
        let e = WiringSpec::parse("mesh").unwrap_err().to_string();
        assert!(e.contains("fully-connected[:OUT]"), "{e}");
    }

    #[test]
    fn every_wiring_text_reads_back_as_the_same_wiring() {
        for text in [
            "fully-connected",
            "fully-connected:3",
            "random:0.25",
            "random:0.5:2",
            "auto-ncp:2",
            "auto-ncp:3:0.75",
            "ncp:4:3:2:2:2:1:2",
        ] {
            let spec = WiringSpec::parse(text).unwrap();
            assert_eq!(WiringSpec::parse(&spec.text()).unwrap(), spec, "{text}");
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<WiringSpec>(&json).unwrap(), spec);
        }
        let err = serde_json::from_str::<WiringSpec>("\"ring:3\"").unwrap_err();
        assert!(err.to_string().contains("valid wirings"), "{err}");
    }
}

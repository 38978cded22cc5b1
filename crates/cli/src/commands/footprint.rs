//! A rough, generous estimate of the memory a model and its training batch need, to refuse
//! impossible sizes with a message instead of an aborted allocation.
use remanence_cells::{CellKind, Kernel, ModelConfig};
use remanence_train::RunConfig;

/// Parameters of the model (recurrent layers and read-out; LTC masks included).
pub fn parameters(m: &ModelConfig) -> u128 {
    let r = &m.rnn;
    let (h, ct) = (r.hidden_size as u128, &r.ct);
    let (u, bl) = (ct.backbone_units as u128, ct.backbone_layers as u128);
    let mut total = 0u128;
    let mut input = r.input_size as u128;
    for _ in 0..r.num_layers {
        total += match r.cell {
            CellKind::Srn | CellKind::Lstm | CellKind::Gru => {
                r.cell.gates() as u128 * h * (input + h + 2)
            }
            CellKind::Ltc => 5 * h * h + 5 * input * h + 3 * h + 2 * input + 2 * h,
            CellKind::Cfc => (input + h) * u + bl.saturating_sub(1) * u * u + 4 * u * h + 4 * h,
            CellKind::Ctrnn => h * (input + h + 2),
            CellKind::Esn => h * (input + h + 1),
            CellKind::Odernn => 3 * h * (input + h + 2) + h * u + bl * u * u + u * h + 2 * u,
        };
        input = h;
    }
    total + h * m.output_size as u128 + m.output_size as u128
}

/// Bytes to train: parameters with their gradients and two optimizer buffers, and the
/// activations of one batch kept for backpropagation.
pub fn training_bytes(cfg: &RunConfig) -> u128 {
    let bytes = if cfg.dtype == "f64" { 8 } else { 4 };
    let r = &cfg.model.rnn;
    let steps = cfg.task.max_steps() as u128;
    let batch = cfg.train.batch_size.max(cfg.train.eval_batch_size) as u128;
    let h = r.hidden_size as u128;
    let per_step = match r.cell {
        CellKind::Ltc if r.kernel == Kernel::Reference => {
            (r.ct.ode_unfolds as u128) * 4 * h * h // the reference keeps every synapse activation
        }
        CellKind::Ltc => (r.ct.ode_unfolds as u128 + 1) * h,
        _ => (2 * r.cell.gates() as u128 + 4) * h,
    };
    let activations = batch * steps * per_step * r.num_layers as u128;
    (4 * parameters(&cfg.model) + activations) * bytes
}

/// `MemAvailable` of /proc/meminfo (Linux); `None` where it cannot be read.
pub fn available_bytes() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn human(bytes: u128) -> String {
    let gib = bytes as f64 / (1u128 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u128 << 20) as f64)
    }
}

//! Device selection by name, with a clear error for devices this binary was not built for.
use candle_core::Device;

use crate::error::{CellError, Result};

pub const DEVICE_NAMES: [&str; 3] = ["cpu", "cuda", "metal"];

/// Parses `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let (kind, ordinal) = match spec.split_once(':') {
        Some((k, n)) => {
            let n: usize = n.parse().map_err(|_| {
                CellError::Device(spec.into(), format!("`{n}` is not a device ordinal"))
            })?;
            (k, n)
        }
        None => (spec, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(CellError::Device(
                    spec.into(),
                    "this binary was built without CUDA; rebuild with `--features cuda`".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| CellError::Device(spec.into(), e.to_string()))
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(CellError::Device(
                    spec.into(),
                    "this binary was built without Metal; rebuild with `--features metal`".into(),
                ));
            }
            Device::new_metal(ordinal).map_err(|e| CellError::Device(spec.into(), e.to_string()))
        }
        _ => Err(CellError::Device(
            spec.into(),
            format!("unknown device; valid devices: {}", DEVICE_NAMES.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_unknown_lists_choices() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("cpu, cuda, metal"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}

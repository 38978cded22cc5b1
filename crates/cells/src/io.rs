//! Reading and writing safetensors files: clear errors that name the file, and atomic writes
//! (a temporary file in the same folder, flushed, then renamed over the target), so a crash never
//! leaves half a file.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{CellError, Result};

fn file_err(path: &Path, msg: impl Into<String>) -> CellError {
    CellError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads every tensor of a safetensors file and its `__metadata__` map.
pub fn read(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    decode(&bytes, path, device)
}

/// Decodes the bytes of a safetensors file (`path` only names it in errors).
pub fn decode(
    bytes: &[u8],
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| file_err(path, format!("not a valid safetensors file ({e})")))?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| file_err(path, format!("not a valid safetensors file ({e})")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, device)
            .map_err(|e| file_err(path, format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, t);
    }
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok((tensors, metadata))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Persist the rename itself; not every platform lets a folder be opened.
            if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_err(path, format!("cannot write: {e}"))
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Serialises named tensors (moved to the CPU, contiguous) with optional metadata and writes the
/// file atomically.
pub fn write(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        owned.push((name.clone(), t));
    }
    let views: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| file_err(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, &bytes)
}

/// Fetches a tensor by name with an error naming the file.
pub fn take(tensors: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor> {
    tensors
        .remove(name)
        .ok_or_else(|| file_err(path, format!("has no tensor `{name}`")))
}

/// Converts every tensor to `dtype`.
pub fn cast_all(tensors: HashMap<String, Tensor>, dtype: DType) -> Result<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corrupt_file_error() {
        let dir = std::env::temp_dir().join(format!("remanence-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.safetensors");
        let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write(&p, &[("t".into(), t.clone())], Some(meta)).unwrap();
        let (ts, m) = read(&p, &Device::Cpu).unwrap();
        assert_eq!(m.get("k").map(String::as_str), Some("v"));
        assert_eq!(
            ts["t"].to_vec2::<f32>().unwrap(),
            t.to_vec2::<f32>().unwrap()
        );
        // Truncate: the error names the file.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = read(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("a.safetensors") && err.contains("not a valid safetensors"),
            "{err}"
        );
        let err = read(&dir.join("none.safetensors"), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none.safetensors") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

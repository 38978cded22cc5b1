//! Reader for the IDX files of MNIST-style data sets (optionally gzip-compressed).
//!
//! Layout: a big-endian header `0x00 0x00 TYPE NDIM`, then NDIM big-endian u32 sizes, then the
//! data. MNIST uses TYPE 0x08 (unsigned byte): images are 3-D (n, rows, cols), labels 1-D (n).
use std::io::Read;
use std::path::Path;

use crate::error::{Result, TaskError};

/// An array of unsigned bytes with its dimensions.
#[derive(Debug, Clone)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn data_err(path: &Path, msg: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{}: {msg}", path.display()))
}

/// Reads an unsigned-byte IDX file with `ndim` dimensions; `.gz` files are decompressed.
pub fn read_u8(path: &Path, ndim: usize) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    let gzip = path.extension().is_some_and(|e| e == "gz");
    decode_u8(&raw, gzip, ndim).map_err(|m| data_err(path, m))
}

/// Decodes the bytes of an unsigned-byte IDX file (gzip-compressed if `gzip`); the error says
/// what is wrong, without the file name.
pub fn decode_u8(raw: &[u8], gzip: bool, ndim: usize) -> std::result::Result<IdxArray, String> {
    if !gzip {
        return parse_u8(raw, ndim);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt gzip stream ({e})"))?;
    parse_u8(&out, ndim)
}

fn parse_u8(bytes: &[u8], ndim: usize) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err("too short for an IDX header".into());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad IDX magic number {:02x}{:02x}{:02x}{:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x}, expected 0x08 (unsigned byte)",
            bytes[2]
        ));
    }
    if bytes[3] as usize != ndim {
        return Err(format!(
            "IDX file has {} dimensions, expected {ndim}",
            bytes[3]
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err("truncated IDX header".into());
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|k| u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().unwrap()) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("IDX header announces {dims:?}, more elements than memory holds"))?;
    let have = bytes.len() - header;
    if have != n {
        return Err(format!(
            "IDX header announces {dims:?} = {n} bytes of data, the file holds {have}"
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_rejects() {
        let a = parse_u8(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), 2).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(parse_u8(&idx(&[2, 3], &[1, 2, 3]), 2)
            .unwrap_err()
            .contains("holds 3"));
        assert!(parse_u8(&idx(&[u32::MAX; 3], &[0]), 3)
            .unwrap_err()
            .contains("more elements"));
        assert!(parse_u8(&idx(&[6], &[0; 6]), 2)
            .unwrap_err()
            .contains("1 dimensions"));
        let mut bad = idx(&[1], &[0]);
        bad[2] = 0x0d;
        assert!(parse_u8(&bad, 1).unwrap_err().contains("element type"));
        bad[0] = 7;
        assert!(parse_u8(&bad, 1).unwrap_err().contains("magic"));
    }
}

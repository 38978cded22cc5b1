//! Reading unsigned-byte arrays from NumPy `.npy` files (format versions 1, 2 and 3), for the
//! videos users bring (the published Moving MNIST test set, `mnist_test_seq.npy`, is a
//! `(20, 10000, 64, 64)` uint8 array in C order: frame-major, then sequence, row, column).
//!
//! The header (magic, version, the Python dict literal with `descr`, `fortran_order` and
//! `shape`) is parsed by the `npyz` crate; this module checks what the caller needs (unsigned
//! bytes, C order, the expected rank and sizes, every data byte present) and reads the data
//! itself, so a large file is read in a few big slices instead of byte by byte. Every error
//! names the file and says what was expected.
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use npyz::{DType, NpyFile, Order, TypeChar};

use crate::error::{Result, TaskError};

/// The header of an unsigned-byte `.npy` file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct U8Header {
    pub shape: Vec<usize>,
    /// Offset of the first data byte.
    pub data_offset: u64,
}

fn err(path: &Path, msg: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{}: {msg}", path.display()))
}

/// Reads the header of `path` and checks that it holds unsigned bytes (`u1`) in C order, with
/// `rank` dimensions, and that the file holds exactly the data the shape announces.
pub fn read_u8_header(path: &Path, rank: usize) -> Result<(U8Header, BufReader<File>)> {
    let file = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| err(path, format!("cannot read: {e}")))?
        .len();
    let mut reader = BufReader::new(file);
    let header = u8_header(&mut reader, file_len, path, rank)?;
    Ok((header, reader))
}

/// [`read_u8_header`] on any reader of `len` bytes positioned at the magic string; `path`
/// names the source in errors. Leaves the reader at the first data byte.
fn u8_header<R: Read + Seek>(
    reader: &mut R,
    len: u64,
    path: &Path,
    rank: usize,
) -> Result<U8Header> {
    // npyz allocates the header length the file declares before reading it: a corrupt length
    // field (4 bytes in versions 2 and 3) could ask for gigabytes (found by the npy_file fuzz
    // target; its input is in fuzz/regressions/npy_file/). Check it against the file first.
    let mut preamble = [0u8; 12];
    let got = reader
        .read(&mut preamble)
        .map_err(|e| err(path, format!("cannot read: {e}")))?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| err(path, format!("cannot read: {e}")))?;
    if got >= 10 && preamble.starts_with(b"\x93NUMPY") {
        let (declared, start) = match preamble[6] {
            1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as u64, 10),
            2 | 3 if got >= 12 => (
                u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]) as u64,
                12,
            ),
            _ => (0, 0),
        };
        if start > 0 && start + declared > len {
            return Err(err(
                path,
                format!(
                    "the .npy header declares {declared} bytes of header, more than the file's {len} bytes: \
                     the file is truncated or not a .npy file"
                ),
            ));
        }
        // npyz parses the header dictionary with a backtracking parser that takes exponential
        // time on deeply nested brackets (the npy_file fuzz target found inputs of 200 bytes
        // that ran for minutes). A uint8 array's header nests two levels: refuse more than 4.
        if start > 0 {
            let mut text = vec![0u8; declared as usize];
            reader
                .seek(SeekFrom::Start(start as u64))
                .and_then(|_| reader.read_exact(&mut text))
                .map_err(|e| err(path, format!("cannot read the .npy header: {e}")))?;
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| err(path, format!("cannot read: {e}")))?;
            let (mut depth, mut deepest) = (0i64, 0i64);
            for b in &text {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth -= 1,
                    _ => {}
                }
                deepest = deepest.max(depth);
            }
            if deepest > 4 {
                return Err(err(
                    path,
                    format!(
                        "the .npy header dictionary nests {deepest} levels of brackets; a uint8 \
                         array's header has two: not a .npy file of this kind"
                    ),
                ));
            }
        }
    }
    let npy = NpyFile::new(&mut *reader).map_err(|e| {
        err(
            path,
            format!("not a readable NumPy .npy file (version 1, 2 or 3 header): {e}"),
        )
    })?;
    let header = npy.header().clone();
    drop(npy);
    let dtype = header.dtype();
    let is_u8 =
        matches!(&dtype, DType::Plain(t) if t.type_char() == TypeChar::Uint && t.size_field() == 1);
    if !is_u8 {
        return Err(err(
            path,
            format!(
                "array of dtype `{}`, expected unsigned bytes (`|u1`, numpy.uint8)",
                dtype.descr()
            ),
        ));
    }
    if header.order() == Order::Fortran {
        return Err(err(
            path,
            "array stored in Fortran order (fortran_order: True), expected C order; save it \
             with numpy.ascontiguousarray(a) first",
        ));
    }
    let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
    if shape.len() != rank {
        return Err(err(
            path,
            format!(
                "array of shape {shape:?} ({} dimensions), expected {rank} dimensions",
                shape.len()
            ),
        ));
    }
    let data_offset = reader
        .stream_position()
        .map_err(|e| err(path, format!("cannot read: {e}")))?;
    let bytes = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| err(path, format!("shape {shape:?} is larger than any file")))?;
    let have = len.saturating_sub(data_offset);
    if have != bytes {
        return Err(err(
            path,
            format!(
                "the header announces shape {shape:?} = {bytes} bytes of data, the file holds \
                 {have} ({})",
                if have < bytes {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    Ok(U8Header { shape, data_offset })
}

/// The header of an in-memory `.npy` file, checked as [`read_u8_header`] checks a file's;
/// `source` names it in errors.
pub fn decode_u8_header(bytes: &[u8], source: &str, rank: usize) -> Result<U8Header> {
    u8_header(
        &mut Cursor::new(bytes),
        bytes.len() as u64,
        Path::new(source),
        rank,
    )
}

/// Sequences of a video, in sequence-major order `(n, frames, height·width)`: read from a file
/// laid out `(frames, sequences, height, width)` (the published Moving MNIST layout) or from a
/// folder of frame folders ([`crate::frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// Sequences kept.
    pub sequences: usize,
    /// Sequences in the file (or sequence folders in the folder).
    pub in_file: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    /// `sequences × frames × height × width` bytes, sequence by sequence.
    pub data: Vec<u8>,
    /// Sequences left out as bad at the user's request (`--skip-bad`), each with its error;
    /// always empty for a `.npy` file, which is read whole or refused.
    pub skipped: Vec<String>,
}

impl Video {
    /// The frames of sequence `i`, `frames × height × width` bytes.
    pub fn sequence(&self, i: usize) -> &[u8] {
        let n = self.frames * self.height * self.width;
        &self.data[i * n..(i + 1) * n]
    }
}

/// Reads a `(frames, sequences, height, width)` uint8 video file, checking the frame count and
/// size; keeps the first `limit` sequences (0: all).
pub fn read_video(
    path: &Path,
    frames: usize,
    height: usize,
    width: usize,
    limit: usize,
) -> Result<Video> {
    let (h, mut reader) = read_u8_header(path, 4)?;
    video_data(&h, &mut reader, path, frames, height, width, limit)
}

/// [`read_video`] on the bytes of a `.npy` file held in memory; `source` names it in errors
/// (what the `npy_file` fuzz target runs).
pub fn decode_video(
    bytes: &[u8],
    source: &str,
    frames: usize,
    height: usize,
    width: usize,
    limit: usize,
) -> Result<Video> {
    let path = Path::new(source);
    let mut reader = Cursor::new(bytes);
    let h = u8_header(&mut reader, bytes.len() as u64, path, 4)?;
    video_data(&h, &mut reader, path, frames, height, width, limit)
}

/// Checks a video's shape against the expected frames and size and reads its first `limit`
/// sequences (0: all) into sequence-major order.
fn video_data<R: Read + Seek>(
    h: &U8Header,
    reader: &mut R,
    path: &Path,
    frames: usize,
    height: usize,
    width: usize,
    limit: usize,
) -> Result<Video> {
    let s = &h.shape;
    // Every dimension ≥ 1: an array of 0 bytes may declare 10¹² frames of 0×0 pixels, and
    // reading it frame by frame would not end (found by the npy_file fuzz target).
    if s[0] != frames || s[2] != height || s[3] != width || s.contains(&0) {
        return Err(err(
            path,
            format!(
                "array of shape {s:?}, expected ({frames}, SEQUENCES, {height}, {width}) with \
                 SEQUENCES ≥ 1 (the published Moving MNIST layout: frame, sequence, row, column)"
            ),
        ));
    }
    let in_file = s[1];
    let n = if limit == 0 {
        in_file
    } else {
        limit.min(in_file)
    };
    let pixels = height * width;
    let mut data = vec![0u8; n * frames * pixels];
    let mut slab = vec![0u8; n * pixels];
    for f in 0..frames {
        let at = h.data_offset + (f * in_file * pixels) as u64;
        reader
            .seek(SeekFrom::Start(at))
            .and_then(|_| reader.read_exact(&mut slab))
            .map_err(|e| err(path, format!("cannot read frame {f}: {e}")))?;
        for q in 0..n {
            let to = (q * frames + f) * pixels;
            data[to..to + pixels].copy_from_slice(&slab[q * pixels..(q + 1) * pixels]);
        }
    }
    Ok(Video {
        sequences: n,
        in_file,
        frames,
        height,
        width,
        data,
        skipped: Vec::new(),
    })
}

/// The bytes of a `.npy` file of format `version` (1, 2 or 3) holding `data` with the header dict `dict` (padded as
/// numpy pads it), for tests and for writing small arrays.
#[doc(hidden)]
pub fn npy_bytes(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let size_len = if version == 1 { 2 } else { 4 };
    let pre = 6 + 2 + size_len;
    let mut text = dict.to_string();
    while (pre + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(tag: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("remanence-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{tag}.npy"));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn dict(descr: &str, fortran: bool, shape: &str) -> String {
        let f = if fortran { "True" } else { "False" };
        format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}")
    }

    /// (frames 2, sequences 3, 2×2 pixels): byte = 16·frame + 4·sequence + pixel.
    fn tiny() -> Vec<u8> {
        (0..2u8)
            .flat_map(|f| (0..3u8).flat_map(move |q| (0..4u8).map(move |p| 16 * f + 4 * q + p)))
            .collect()
    }

    #[test]
    fn reads_videos_in_every_header_version_into_sequence_order() {
        for version in [1u8, 2, 3] {
            let p = write(
                &format!("good-v{version}"),
                &npy_bytes(version, &dict("|u1", false, "(2, 3, 2, 2)"), &tiny()),
            );
            let v = read_video(&p, 2, 2, 2, 0).unwrap();
            assert_eq!((v.sequences, v.in_file, v.frames), (3, 3, 2));
            // Sequence 1: frame 0 pixels 4..8, then frame 1 pixels 20..24.
            assert_eq!(v.sequence(1), &[4, 5, 6, 7, 20, 21, 22, 23]);
            let v = read_video(&p, 2, 2, 2, 2).unwrap();
            assert_eq!(v.sequences, 2);
            assert_eq!(v.sequence(0), &[0, 1, 2, 3, 16, 17, 18, 19]);
            assert_eq!(v.data.len(), 2 * 2 * 4);
        }
        // The published layout's header (little-endian unsigned bytes need no byte order).
        let p = write(
            "u1-lt",
            &npy_bytes(1, &dict("<u1", false, "(2, 3, 2, 2)"), &tiny()),
        );
        assert!(read_video(&p, 2, 2, 2, 0).is_ok());
    }

    #[test]
    fn decodes_bytes_as_it_reads_files() {
        let bytes = npy_bytes(2, &dict("|u1", false, "(2, 3, 2, 2)"), &tiny());
        let p = write("bytes", &bytes);
        assert_eq!(
            decode_video(&bytes, "mem.npy", 2, 2, 2, 2).unwrap(),
            read_video(&p, 2, 2, 2, 2).unwrap()
        );
        let h = decode_u8_header(&bytes, "mem.npy", 4).unwrap();
        assert_eq!(h.shape, vec![2, 3, 2, 2]);
        let e = decode_video(&bytes[..bytes.len() - 1], "mem.npy", 2, 2, 2, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mem.npy") && e.contains("truncated"), "{e}");
        let e = decode_video(&bytes, "mem.npy", 3, 2, 2, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected (3, SEQUENCES, 2, 2)"), "{e}");
    }

    #[test]
    fn refuses_bad_files_naming_the_file_and_what_was_expected() {
        let good = tiny();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "dtype",
                npy_bytes(1, &dict("<f4", false, "(2, 3, 2, 2)"), &[0; 96]),
                "expected unsigned bytes",
            ),
            (
                "fortran",
                npy_bytes(1, &dict("|u1", true, "(2, 3, 2, 2)"), &good),
                "Fortran order",
            ),
            (
                "rank",
                npy_bytes(1, &dict("|u1", false, "(6, 2, 2)"), &good),
                "expected 4 dimensions",
            ),
            (
                "shape",
                npy_bytes(1, &dict("|u1", false, "(3, 2, 2, 2)"), &good[..24]),
                "expected (2, SEQUENCES, 2, 2)",
            ),
            (
                "truncated",
                npy_bytes(1, &dict("|u1", false, "(2, 3, 2, 2)"), &good[..20]),
                "the file holds 20 (truncated)",
            ),
            (
                "trailing",
                npy_bytes(
                    1,
                    &dict("|u1", false, "(2, 3, 2, 2)"),
                    &[good.clone(), vec![0]].concat(),
                ),
                "trailing bytes",
            ),
            (
                "magic",
                b"PK\x03\x04not npy".to_vec(),
                "not a readable NumPy",
            ),
            (
                "version",
                {
                    let mut b = npy_bytes(1, &dict("|u1", false, "(2, 3, 2, 2)"), &good);
                    b[6] = 9;
                    b
                },
                "not a readable NumPy",
            ),
        ];
        for (tag, bytes, want) in cases {
            let p = write(tag, &bytes);
            let e = read_video(&p, 2, 2, 2, 0).unwrap_err().to_string();
            assert!(e.contains(&p.display().to_string()), "{tag}: {e}");
            assert!(e.contains(want), "{tag}: {e}");
        }
        let e = read_video(Path::new("/no/such/video.npy"), 2, 2, 2, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/no/such/video.npy") && e.contains("cannot open"),
            "{e}"
        );
    }
}

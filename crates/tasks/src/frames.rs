//! Reading a video from a folder of frame folders, the second form of `--video` (the first is
//! a `.npy` file, [`crate::npy`]): `DIR/<sequence>/<frame>.png|.jpg|.jpeg`.
//!
//! - Every sub-folder of `DIR` is one sequence; files directly in `DIR` and names starting with
//!   `.` are ignored. Each sequence holds exactly the task's number of frames.
//! - The frames of a sequence are its files ending in `.png`, `.jpg` or `.jpeg` (any case);
//!   other files are ignored (and counted in the error when frames are missing).
//! - Order ([`sort_names`]), for sequences and frames alike: when every name (a file's without
//!   its extension) holds a number, by the last run of digits in it, as a whole number (so
//!   `frame_2` comes before `frame_10`), ties by name; otherwise by name, byte by byte
//!   (lexicographic: zero-padded names sort right).
//! - Each frame is decoded by the `image` crate (the format is found from the content, the
//!   extension only breaking a tie), converted to 8-bit grey (luma: Rec. 709 weights of the
//!   colour channels, alpha dropped, 16-bit samples scaled), and must have the task's size:
//!   nothing is resized or cropped.
//!
//! Every error names the folder or frame at fault. A bad sequence (missing or extra frames, a
//! frame of another size, an unreadable or corrupt image) stops the reading, unless the caller
//! asks to skip bad sequences: then each is left out and its error kept in [`Video::skipped`].
use std::path::{Path, PathBuf};

use crate::error::{Result, TaskError};
use crate::npy::Video;

/// Extensions of frame files (compared without regard to case).
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn err(path: &Path, msg: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{}: {msg}", path.display()))
}

/// The text of an error without the `data: ` its display adds (it is wrapped again).
fn message(e: TaskError) -> String {
    match e {
        TaskError::Data(m) => m,
        e => e.to_string(),
    }
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_frame_file(path: &Path) -> bool {
    path.is_file()
        && !hidden(path)
        && path.extension().is_some_and(|x| {
            let x = x.to_string_lossy();
            EXTENSIONS.iter().any(|e| x.eq_ignore_ascii_case(e))
        })
}

/// The last run of ASCII digits in `name`, without its leading zeros (`"7"` for `f_007`, `"0"`
/// for `f_000`); `None` when it holds no digit.
fn last_number(name: &str) -> Option<&str> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = name[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let digits = name[start..end].trim_start_matches('0');
    Some(if digits.is_empty() { "0" } else { digits })
}

/// Sorts `paths` in the order of this module (see the module doc): by the last number in each
/// name (a file's without its extension) when every name has one, ties by name; otherwise by
/// name.
pub fn sort_names(paths: &mut [PathBuf]) {
    let text = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
    // (name without extension for files, whole name)
    let mut keyed: Vec<(String, String, PathBuf)> = paths
        .iter()
        .map(|p| {
            let name = text(p.file_name()).unwrap_or_default();
            let stem = if p.is_dir() {
                name.clone()
            } else {
                text(p.file_stem()).unwrap_or_default()
            };
            (stem, name, p.clone())
        })
        .collect();
    if keyed.iter().all(|(stem, ..)| last_number(stem).is_some()) {
        // Whole numbers of any length, compared without parsing: shorter is smaller.
        keyed.sort_by(|(sa, na, _), (sb, nb, _)| {
            let (a, b) = (last_number(sa).unwrap(), last_number(sb).unwrap());
            (a.len(), a).cmp(&(b.len(), b)).then_with(|| na.cmp(nb))
        });
    } else {
        keyed.sort_by(|a, b| a.1.cmp(&b.1));
    }
    for (slot, (.., p)) in paths.iter_mut().zip(keyed) {
        *slot = p;
    }
}

/// Lists the entries of `dir` that `keep` accepts, and how many it did not.
fn list(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<(Vec<PathBuf>, usize)> {
    let mut kept = Vec::new();
    let mut others = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, format!("cannot list: {e}")))?;
    for entry in entries {
        let path = entry
            .map_err(|e| err(dir, format!("cannot list: {e}")))?
            .path();
        if keep(&path) {
            kept.push(path);
        } else if !hidden(&path) {
            others += 1;
        }
    }
    sort_names(&mut kept);
    Ok((kept, others))
}

/// Decodes the frame file `path` into `height × width` grey bytes, row by row; refuses an
/// image of another size (its header is read first, so a huge one is never decoded).
pub fn read_frame(path: &Path, height: usize, width: usize) -> Result<Vec<u8>> {
    let open = || {
        image::io::Reader::open(path)
            .map_err(|e| err(path, format!("cannot open: {e}")))?
            .with_guessed_format()
            .map_err(|e| err(path, format!("cannot read: {e}")))
    };
    let unreadable = |e: image::ImageError| {
        err(
            path,
            format!("not a readable PNG or JPEG image (corrupt or of another format): {e}"),
        )
    };
    let (w, h) = open()?.into_dimensions().map_err(unreadable)?;
    if (w as usize, h as usize) != (width, height) {
        return Err(err(
            path,
            format!(
                "frame of {w}×{h} pixels, expected {width}×{height} (width × height); frames \
                 are not resized: resize them to {width}×{height} first"
            ),
        ));
    }
    let grey = open()?.decode().map_err(unreadable)?.to_luma8();
    if (grey.width() as usize, grey.height() as usize) != (width, height) {
        return Err(err(
            path,
            format!(
                "decoded to {}×{} pixels, its header says {w}×{h}",
                grey.width(),
                grey.height()
            ),
        ));
    }
    Ok(grey.into_raw())
}

/// The `frames × height × width` grey bytes of the sequence folder `dir`.
pub fn read_sequence(dir: &Path, frames: usize, height: usize, width: usize) -> Result<Vec<u8>> {
    let (files, others) = list(dir, is_frame_file)?;
    if files.len() != frames {
        let ignored = if others > 0 {
            format!("; {others} other entries ignored")
        } else {
            String::new()
        };
        let what = if files.len() < frames {
            format!(
                "holds {} of {frames} frames: {} missing",
                files.len(),
                frames - files.len()
            )
        } else {
            format!(
                "holds {} frames, {frames} expected: {} too many",
                files.len(),
                files.len() - frames
            )
        };
        return Err(err(
            dir,
            format!(
                "sequence folder {what} (frames are .png, .jpg or .jpeg files, one a frame\
                 {ignored})"
            ),
        ));
    }
    let mut out = Vec::with_capacity(frames * height * width);
    for f in &files {
        out.extend(read_frame(f, height, width)?);
    }
    Ok(out)
}

/// Reads the video in the folder `dir` (`dir/<sequence>/<frame>.png|.jpg|.jpeg`, see the
/// module doc): sequences of `frames` frames of `height × width` pixels, in sequence-major
/// order. Keeps the first `limit` good sequences (0: all; the folders after them are not
/// read). A bad sequence stops the reading with its error, or with `skip_bad` is left out and
/// reported in [`Video::skipped`].
pub fn read_frame_folders(
    dir: &Path,
    frames: usize,
    height: usize,
    width: usize,
    limit: usize,
    skip_bad: bool,
) -> Result<Video> {
    let (sequences, _) = list(dir, |p| p.is_dir() && !hidden(p))?;
    if sequences.is_empty() {
        let (images, _) = list(dir, is_frame_file)?;
        let hint = if images.is_empty() {
            String::new()
        } else {
            format!(
                "; it holds {} frames itself: put each sequence's frames in a folder of its \
                 own inside it",
                images.len()
            )
        };
        return Err(err(
            dir,
            format!(
                "holds no sequence folders (expected {}/<sequence>/<frame>.png|.jpg|.jpeg, \
                 {frames} frames a sequence){hint}",
                dir.display()
            ),
        ));
    }
    let in_file = sequences.len();
    let mut data = Vec::new();
    let mut kept = 0;
    let mut skipped = Vec::new();
    for seq in &sequences {
        if limit > 0 && kept == limit {
            break;
        }
        match read_sequence(seq, frames, height, width) {
            Ok(bytes) => {
                data.extend(bytes);
                kept += 1;
            }
            Err(e) if skip_bad => skipped.push(message(e)),
            Err(e) => {
                return Err(TaskError::Data(format!(
                    "{} (pass --skip-bad to skip bad sequences)",
                    message(e)
                )))
            }
        }
    }
    if kept == 0 {
        return Err(err(
            dir,
            format!(
                "all {} of its sequences are bad; the first: {}",
                skipped.len(),
                skipped[0]
            ),
        ));
    }
    Ok(Video {
        sequences: kept,
        in_file,
        frames,
        height,
        width,
        data,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    /// A fresh empty folder for one test.
    fn folder(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("remanence-frames-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Pixel (r, c) of frame `f` of sequence `q`.
    fn value(q: usize, f: usize, r: usize, c: usize) -> u8 {
        (q * 50 + f * 10 + r * 3 + c) as u8
    }

    /// Writes sequence `q` as `frames` grey PNGs of `side × side` named `name(f)`.
    fn write_pngs(dir: &Path, q: usize, frames: usize, side: u32, name: impl Fn(usize) -> String) {
        std::fs::create_dir_all(dir).unwrap();
        for f in 0..frames {
            let img = GrayImage::from_fn(side, side, |c, r| {
                Luma([value(q, f, r as usize, c as usize)])
            });
            img.save(dir.join(name(f))).unwrap();
        }
    }

    fn expected(q: usize, frames: usize, side: usize) -> Vec<u8> {
        (0..frames)
            .flat_map(|f| (0..side * side).map(move |p| value(q, f, p / side, p % side)))
            .collect()
    }

    #[test]
    fn orders_by_the_number_in_every_name_else_by_name() {
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let mut v: Vec<PathBuf> = ["f10.png", "f2.png", "f1.png", "g002.png", "f0001.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        sort_names(&mut v);
        assert_eq!(
            names(&v),
            ["f0001.jpg", "f1.png", "f2.png", "g002.png", "f10.png"]
        );
        // A digit in the extension does not count; a name without a number sorts all by name.
        let mut v: Vec<PathBuf> = ["b10.png", "b9.png", "a.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        sort_names(&mut v);
        assert_eq!(names(&v), ["a.png", "b10.png", "b9.png"]);
        assert_eq!(last_number("seq3_frame_0012"), Some("12"));
        assert_eq!(last_number("000"), Some("0"));
        assert_eq!(last_number("frame"), None);
    }

    #[test]
    fn reads_png_sequences_exactly_in_order() {
        let dir = folder("good");
        // Unpadded names: 2 must come before 10, and sequence 10 after sequence 9.
        for q in [9, 10] {
            write_pngs(&dir.join(format!("seq{q}")), q, 12, 5, |f| {
                format!("{f}.png")
            });
        }
        std::fs::write(dir.join("README.txt"), "ignored").unwrap();
        std::fs::write(dir.join("seq9").join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir_all(dir.join(".cache")).unwrap();
        let v = read_frame_folders(&dir, 12, 5, 5, 0, false).unwrap();
        assert_eq!(
            (v.sequences, v.in_file, v.frames, v.height, v.width),
            (2, 2, 12, 5, 5)
        );
        assert_eq!(v.sequence(0), expected(9, 12, 5).as_slice());
        assert_eq!(v.sequence(1), expected(10, 12, 5).as_slice());
        assert!(v.skipped.is_empty());
        let v = read_frame_folders(&dir, 12, 5, 5, 1, false).unwrap();
        assert_eq!((v.sequences, v.in_file), (1, 2));
        assert_eq!(v.sequence(0), expected(9, 12, 5).as_slice());
    }

    #[test]
    fn reads_colour_and_jpeg_frames_as_grey() {
        let dir = folder("jpeg");
        let seq = dir.join("a");
        std::fs::create_dir_all(&seq).unwrap();
        for f in 0..3usize {
            // A smooth ramp survives JPEG's compression within a few levels.
            let img = RgbImage::from_fn(8, 8, |c, r| {
                let v = (f * 40 + r as usize * 8 + c as usize * 4) as u8;
                Rgb([v, v, v])
            });
            let ext = ["jpg", "JPEG", "jpeg"][f];
            img.save_with_format(seq.join(format!("{f:02}.{ext}")), image::ImageFormat::Jpeg)
                .unwrap();
        }
        let v = read_frame_folders(&dir, 3, 8, 8, 0, false).unwrap();
        for f in 0..3 {
            for r in 0..8 {
                for c in 0..8 {
                    let want = (f * 40 + r * 8 + c * 4) as i32;
                    let got = v.sequence(0)[f * 64 + r * 8 + c] as i32;
                    assert!(
                        (got - want).abs() <= 6,
                        "frame {f} ({r}, {c}): {got} vs {want}"
                    );
                }
            }
        }
        // A colour PNG: pure red is Rec. 709 luma 0.2126 · 255 ≈ 54.
        let dir = folder("rgb");
        let seq = dir.join("a");
        std::fs::create_dir_all(&seq).unwrap();
        RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]))
            .save(seq.join("0.png"))
            .unwrap();
        let v = read_frame_folders(&dir, 1, 2, 2, 0, false).unwrap();
        assert!(
            v.data.iter().all(|&b| (53..=55).contains(&b)),
            "{:?}",
            v.data
        );
    }

    /// A folder of three sequences of 4 frames of 6×6: `ok1`, the bad one `bad` (made by
    /// `spoil`), `ok2`.
    fn with_bad(tag: &str, spoil: impl Fn(&Path)) -> PathBuf {
        let dir = folder(tag);
        for (q, name) in ["ok1", "bad", "ok2"].iter().enumerate() {
            write_pngs(&dir.join(name), q, 4, 6, |f| format!("frame_{f:03}.png"));
        }
        spoil(&dir.join("bad"));
        dir
    }

    #[test]
    fn bad_sequences_stop_with_an_error_naming_the_folder_or_frame() {
        type Spoil = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Spoil, Vec<String>)> = vec![
            (
                "missing",
                Box::new(|d: &Path| std::fs::remove_file(d.join("frame_002.png")).unwrap()),
                vec!["bad: sequence folder holds 3 of 4 frames: 1 missing".into()],
            ),
            (
                "extra",
                Box::new(|d: &Path| {
                    std::fs::copy(d.join("frame_000.png"), d.join("frame_004.png")).unwrap();
                }),
                vec!["holds 5 frames, 4 expected".into()],
            ),
            (
                "size",
                Box::new(|d: &Path| {
                    GrayImage::new(7, 5).save(d.join("frame_001.png")).unwrap();
                }),
                vec![
                    "frame_001.png: frame of 7×5 pixels, expected 6×6".into(),
                    "not resized".into(),
                ],
            ),
            (
                "corrupt",
                Box::new(|d: &Path| {
                    let p = d.join("frame_003.png");
                    let bytes = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
                }),
                vec!["frame_003.png: not a readable PNG or JPEG image".into()],
            ),
            (
                "garbage",
                Box::new(|d: &Path| std::fs::write(d.join("frame_000.png"), b"hello").unwrap()),
                vec!["frame_000.png: not a readable PNG or JPEG image".into()],
            ),
        ];
        for (tag, spoil, wants) in cases {
            let dir = with_bad(tag, spoil);
            let e = read_frame_folders(&dir, 4, 6, 6, 0, false)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&dir.join("bad").display().to_string()),
                "{tag}: {e}"
            );
            for want in wants {
                assert!(e.contains(&want), "{tag}: {e}");
            }
            assert!(
                e.contains("(pass --skip-bad to skip bad sequences)"),
                "{tag}: {e}"
            );
            assert!(e.starts_with("data: /"), "{tag}: {e}");

            let v = read_frame_folders(&dir, 4, 6, 6, 0, true).unwrap();
            assert_eq!((v.sequences, v.in_file), (2, 3), "{tag}");
            assert_eq!(v.sequence(0), expected(0, 4, 6).as_slice());
            assert_eq!(v.sequence(1), expected(2, 4, 6).as_slice());
            assert_eq!(v.skipped.len(), 1, "{tag}");
            assert!(v.skipped[0].contains("bad"), "{tag}: {:?}", v.skipped);
            assert!(
                !v.skipped[0].contains("--skip-bad"),
                "{tag}: {:?}",
                v.skipped
            );
            let at = dir.join("bad").display().to_string();
            assert!(v.skipped[0].starts_with(&at), "{tag}: {:?}", v.skipped);
        }
    }

    #[test]
    fn refuses_folders_without_sequences() {
        let dir = folder("empty");
        let e = read_frame_folders(&dir, 20, 64, 64, 0, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("holds no sequence folders"),
            "{e}"
        );
        // Frames directly in the folder: the user pointed at one sequence.
        write_pngs(&dir, 0, 2, 4, |f| format!("{f}.png"));
        let e = read_frame_folders(&dir, 2, 4, 4, 0, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it holds 2 frames itself"), "{e}");
        let e = read_frame_folders(Path::new("/no/such/frames"), 2, 4, 4, 0, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such/frames: cannot list"), "{e}");
        // Every sequence bad, even when skipping.
        let dir = with_bad("allbad", |_| {});
        let e = read_frame_folders(&dir, 5, 6, 6, 0, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("all 3 of its sequences are bad"), "{e}");
        assert!(e.contains("holds 4 of 5 frames"), "{e}");
    }
}

//! Pictures of a continual-learning run: the accuracy matrix as a heatmap and ACC curves.
//!
//! No text is drawn (the build carries no font), so each picture gets a markdown file beside it
//! (same name, `.md`) with the numbers and what the colours mean. Both files are written to a
//! temporary name in the same folder, then renamed.
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{ContinualError, Result};
use crate::matrix::{write_atomic, AccuracyMatrix};

/// Heatmap layout, in pixels.
const CELL: u32 = 40;
const MARGIN: u32 = 12;
/// Between the "before training" row and the matrix, and between the matrix and the colour bar.
const GAP: u32 = 12;
const BAR: u32 = 14;

/// ACC-curve picture size, in pixels.
pub const CURVE_SIZE: (u32, u32) = (640, 400);
const CURVE_MARGIN: i32 = 24;

/// Unknown cells (rows not run yet, `b_j` not measured).
const UNKNOWN: RGBColor = RGBColor(215, 215, 215);
/// Outline of the diagonal cells `R[i][i]` (accuracy right after training on `i`).
const DIAGONAL: RGBColor = RGBColor(235, 120, 20);
const FRAME: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(225, 225, 225);

/// Line colours of the ACC curves, in the order of the methods.
pub const PALETTE: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
];

/// The colour of an accuracy `v` in `[0, 1]` (clamped): white at 0, through a light blue at
/// 0.5, to dark blue at 1, linearly between those stops.
pub fn accuracy_colour(v: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 3] = [
        (0.0, [255.0, 255.0, 255.0]),
        (0.5, [107.0, 174.0, 214.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let k = if v <= STOPS[1].0 { 0 } else { 1 };
    let (a, ca) = STOPS[k];
    let (b, cb) = STOPS[k + 1];
    let t = (v - a) / (b - a);
    let c = |i: usize| (ca[i] + t * (cb[i] - ca[i])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Size `(width, height)` of [`heatmap_png`]'s picture for `m`: `T` columns and `T` rows of
/// 40-pixel cells, a 12-pixel margin, a colour bar on the right (12-pixel gap, 14 pixels wide),
/// and, when any `b_j` is known, one more row on top separated by a 12-pixel gap.
pub fn heatmap_size(m: &AccuracyMatrix) -> (u32, u32) {
    let t = m.experiences.max(1) as u32;
    let w = 2 * MARGIN + t * CELL + GAP + BAR;
    let mut h = 2 * MARGIN + t * CELL;
    if m.initial.iter().any(Option::is_some) {
        h += CELL + GAP;
    }
    (w, h)
}

/// The markdown file written beside a picture: `x.png` → `x.md`.
pub fn sidecar_path(png: &Path) -> PathBuf {
    png.with_extension("md")
}

/// Draws the accuracy matrix `R` to the PNG file `path`: cell `(i, j)` (row `i` from the top =
/// after training on experience `i`, column `j` = experience `j`) is coloured by `R[i][j]` on the
/// [`accuracy_colour`] scale (white 0 → dark blue 1); the diagonal cells `R[i][i]` are outlined in
/// orange; rows not run yet (partial run) are grey with a cross. When any `b_j` is known, the
/// "before training" row is drawn on top, separated by a gap (unknown `b_j` grey with a cross).
/// On the right, the colour bar from 0 (bottom) to 1 (top) with ticks every 0.2. The size is
/// [`heatmap_size`]. Also writes `matrix.to_markdown()` to [`sidecar_path`]`(path)`.
pub fn heatmap_png(matrix: &AccuracyMatrix, path: &Path) -> Result<()> {
    matrix.validate()?;
    let (w, h) = heatmap_size(matrix);
    let t = matrix.experiences as i32;
    let (cell, m) = (CELL as i32, MARGIN as i32);
    let has_initial = matrix.initial.iter().any(Option::is_some);
    // Top edge of the matrix block.
    let top = if has_initial {
        m + cell + GAP as i32
    } else {
        m
    };
    let x = |j: i32| m + j * cell;
    let y = |i: i32| top + i * cell;
    let bar_x = x(t) + GAP as i32;
    let bottom = y(t);

    let draw = |tmp: &Path| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        // One cell: value or unknown, inset by one pixel so cells stay apart.
        let draw_cell = |x0: i32,
                         y0: i32,
                         v: Option<f64>|
         -> std::result::Result<(), Box<dyn std::error::Error>> {
            let (a, b) = ((x0 + 1, y0 + 1), (x0 + cell - 1, y0 + cell - 1));
            match v {
                Some(v) => {
                    root.draw(&Rectangle::new([a, b], accuracy_colour(v).filled()))?;
                    root.draw(&Rectangle::new([a, b], RGBColor(200, 200, 200)))?;
                }
                None => {
                    root.draw(&Rectangle::new([a, b], UNKNOWN.filled()))?;
                    root.draw(&PathElement::new(vec![a, b], WHITE.stroke_width(2)))?;
                    root.draw(&PathElement::new(
                        vec![(a.0, b.1), (b.0, a.1)],
                        WHITE.stroke_width(2),
                    ))?;
                }
            }
            Ok(())
        };
        if has_initial {
            for (j, b) in matrix.initial.iter().enumerate() {
                draw_cell(x(j as i32), m, *b)?;
            }
        }
        for i in 0..t {
            for j in 0..t {
                draw_cell(x(j), y(i), matrix.get(i as usize, j as usize))?;
            }
        }
        // Diagonal outline, two pixels wide, for the rows present.
        for i in 0..matrix.trained() as i32 {
            let (x0, y0) = (x(i), y(i));
            for d in 0..2 {
                root.draw(&Rectangle::new(
                    [
                        (x0 + 1 + d, y0 + 1 + d),
                        (x0 + cell - 1 - d, y0 + cell - 1 - d),
                    ],
                    DIAGONAL,
                ))?;
            }
        }
        // Colour bar: one-pixel rows from 1 (top) to 0 (bottom), then frame and ticks.
        let span = (bottom - top).max(1);
        for py in top..bottom {
            let v = 1.0 - (py - top) as f64 / (span - 1).max(1) as f64;
            // A one-pixel-high filled rectangle draws nothing; a line does.
            root.draw(&PathElement::new(
                vec![(bar_x, py), (bar_x + BAR as i32 - 1, py)],
                accuracy_colour(v),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bar_x, top), (bar_x + BAR as i32 - 1, bottom - 1)],
            FRAME,
        ))?;
        for k in 0..=5 {
            let py = bottom - 1 - ((span - 1) * k) / 5;
            root.draw(&PathElement::new(vec![(bar_x - 4, py), (bar_x, py)], FRAME))?;
        }
        root.present()?;
        Ok(())
    };
    write_png(path, draw)?;
    let mut md = String::from(
        "Accuracy matrix R[i][j]: rows = after training on experience i (top to bottom), \
         columns = experience j (left to right). Colour: white = 0 → dark blue = 1 (bar on the \
         right, ticks every 0.2); orange outline = diagonal R[i][i]; grey with a cross = not \
         measured.",
    );
    if has_initial {
        md.push_str(" Top row, apart: accuracy before any training (b_j).");
    }
    md.push_str("\n\n");
    md.push_str(&matrix.to_markdown());
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// Draws ACC curves to the PNG file `path` ([`CURVE_SIZE`]): for each `(method, values)`,
/// `values[i]` is the accuracy on the experiences seen so far after training on experience `i`
/// ([`AccuracyMatrix::acc_seen_curve`]); one line with a dot per point, in the method's
/// [`PALETTE`] colour (in order, cycling). The x axis runs over experiences `0..n` (`n` the
/// longest curve; light vertical lines at each experience), the y axis from 0 (bottom) to 1
/// (top) with grid lines every 0.2. Non-finite values leave a break in their line; values are
/// clamped to `[0, 1]`. Also writes a markdown table of the methods, their colours and values to
/// [`sidecar_path`]`(path)`.
pub fn acc_curve_png(curves: &[(String, Vec<f64>)], path: &Path) -> Result<()> {
    let (w, h) = CURVE_SIZE;
    let n = curves.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let (left, right) = (CURVE_MARGIN, w as i32 - CURVE_MARGIN);
    let (top, bottom) = (CURVE_MARGIN, h as i32 - CURVE_MARGIN);
    // With a single experience the lone point sits in the middle.
    let px = |i: usize| -> i32 {
        if n <= 1 {
            (left + right) / 2
        } else {
            left + ((right - left) as f64 * i as f64 / (n - 1) as f64).round() as i32
        }
    };
    let py = |v: f64| bottom - ((bottom - top) as f64 * v.clamp(0.0, 1.0)).round() as i32;
    let colour = |k: usize| {
        let (r, g, b) = PALETTE[k % PALETTE.len()];
        RGBColor(r, g, b)
    };

    let draw = |tmp: &Path| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        for i in 0..n {
            root.draw(&PathElement::new(vec![(px(i), top), (px(i), bottom)], GRID))?;
        }
        for k in 1..5 {
            let yk = py(k as f64 * 0.2);
            root.draw(&PathElement::new(
                vec![(left, yk), (right, yk)],
                RGBColor(190, 190, 190),
            ))?;
        }
        // Frame: y = 0 and y = 1, and the sides.
        root.draw(&Rectangle::new([(left, top), (right, bottom)], FRAME))?;
        for (k, (_, values)) in curves.iter().enumerate() {
            let style = colour(k).stroke_width(2);
            // Consecutive finite points form one segment.
            let mut segment: Vec<(i32, i32)> = Vec::new();
            for (i, &v) in values.iter().enumerate() {
                if v.is_finite() {
                    segment.push((px(i), py(v)));
                } else if !segment.is_empty() {
                    root.draw(&PathElement::new(std::mem::take(&mut segment), style))?;
                }
            }
            if !segment.is_empty() {
                root.draw(&PathElement::new(segment, style))?;
            }
            for (i, &v) in values.iter().enumerate() {
                if v.is_finite() {
                    root.draw(&Circle::new((px(i), py(v)), 4, colour(k).filled()))?;
                }
            }
        }
        root.present()?;
        Ok(())
    };
    write_png(path, draw)?;

    let mut md = String::from(
        "ACC on the experiences seen so far, after training on each experience (x: experience \
         0 at the left; y: 0 at the bottom to 1 at the top, grid every 0.2).\n\n| method | colour |",
    );
    for i in 0..n {
        md.push_str(&format!(" after exp {i} |"));
    }
    md.push_str("\n|---|---|");
    for _ in 0..n {
        md.push_str("---:|");
    }
    md.push('\n');
    for (k, (method, values)) in curves.iter().enumerate() {
        let (r, g, b) = PALETTE[k % PALETTE.len()];
        md.push_str(&format!("| {method} | #{r:02x}{g:02x}{b:02x} |"));
        for i in 0..n {
            match values.get(i) {
                Some(v) if v.is_finite() => md.push_str(&format!(" {v:.4} |")),
                _ => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// Runs `draw` on a temporary `.png` file beside `path` (the bitmap encoder picks the format
/// from the extension), then renames it onto `path`; removes the temporary file on failure.
fn write_png(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{stem}.tmp-{}.png", std::process::id()));
    let res = draw(&tmp)
        .map_err(|e| ContinualError::File {
            path: path.to_path_buf(),
            msg: format!("cannot draw: {e}"),
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| ContinualError::File {
                path: path.to_path_buf(),
                msg: format!("cannot rename {}: {e}", tmp.display()),
            })
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Pseudo-patterns as pictures: each of `patterns` (T steps × F features, row-major) drawn as a
/// grey-scale tile, time downwards and features across, `lo..hi` mapped to black..white, in rows
/// of `per_row` tiles, each pixel `scale` × `scale`.
pub fn patterns_png(
    patterns: &[Vec<f32>],
    steps: usize,
    features: usize,
    (lo, hi): (f32, f32),
    path: &Path,
) -> Result<()> {
    if patterns.is_empty() || steps == 0 || features == 0 {
        return Err(ContinualError::Config("no pseudo-patterns to draw".into()));
    }
    let per_row = 8usize.min(patterns.len());
    let rows = patterns.len().div_ceil(per_row);
    let scale = (4usize).max(112 / features.max(steps)).min(8);
    let (tw, th) = (features * scale, steps * scale);
    let gap = 4usize;
    let w = (per_row * (tw + gap) + gap) as u32;
    let h = (rows * (th + gap) + gap) as u32;
    let span = (hi - lo).max(f32::EPSILON);
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&RGBColor(90, 90, 140))?;
        for (k, p) in patterns.iter().enumerate() {
            let (x0, y0) = (
                gap + (k % per_row) * (tw + gap),
                gap + (k / per_row) * (th + gap),
            );
            for t in 0..steps {
                for f in 0..features {
                    let v = p.get(t * features + f).copied().unwrap_or(lo);
                    let g = (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
                    let (x, y) = ((x0 + f * scale) as i32, (y0 + t * scale) as i32);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + scale as i32, y + scale as i32)],
                        RGBColor(g, g, g).filled(),
                    ))?;
                }
            }
        }
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("remanence-plots-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 24);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |k: usize| u32::from_be_bytes(bytes[k..k + 4].try_into().unwrap());
        (be(16), be(20))
    }

    fn example() -> AccuracyMatrix {
        let mut m = AccuracyMatrix::new(4).unwrap();
        m.set_initial_row(&[0.1, 0.25, 0.0, 0.5]).unwrap();
        m.push_row(vec![0.95, 0.3, 0.1, 0.2]).unwrap();
        m.push_row(vec![0.7, 0.9, 0.2, 0.3]).unwrap();
        m.push_row(vec![0.5, 0.6, 0.85, 0.4]).unwrap();
        m.push_row(vec![0.4, 0.5, 0.7, 1.0]).unwrap();
        m
    }

    fn only_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plots_heatmap_file_and_size() {
        let dir = temp_dir("heatmap");
        let m = example();
        let path = dir.join("heatmap.png");
        heatmap_png(&m, &path).unwrap();
        let (w, h) = heatmap_size(&m);
        assert_eq!(
            (w, h),
            (2 * 12 + 4 * 40 + 12 + 14, 2 * 12 + 4 * 40 + 40 + 12)
        );
        assert_eq!(png_size(&path), (w, h));
        assert_eq!(only_files(&dir), vec!["heatmap.md", "heatmap.png"]);
        let md = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert!(md.contains("| after exp 3 | 0.4000 | 0.5000 | 0.7000 | 1.0000 |"));

        // Partial, no b_j: no top row; the missing rows are drawn, the size depends on T only.
        let mut p = AccuracyMatrix::new(4).unwrap();
        p.push_row(m.rows[0].clone()).unwrap();
        let path = dir.join("partial.png");
        heatmap_png(&p, &path).unwrap();
        assert_eq!(
            png_size(&path),
            (2 * 12 + 4 * 40 + 12 + 14, 2 * 12 + 4 * 40)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plots_acc_curve_file_and_size() {
        let dir = temp_dir("curve");
        let path = dir.join("acc.png");
        let curves = vec![
            ("naive".to_string(), vec![0.95, 0.6, 0.45, 0.3]),
            ("replay".to_string(), vec![0.95, 0.85, 0.8, 0.75]),
            ("joint".to_string(), vec![0.96, f64::NAN, 0.93, 0.92]),
        ];
        acc_curve_png(&curves, &path).unwrap();
        assert_eq!(png_size(&path), CURVE_SIZE);
        assert_eq!(only_files(&dir), vec!["acc.md", "acc.png"]);
        let md = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert!(md.contains("| joint | #2ca02c | 0.9600 | – | 0.9300 | 0.9200 |"));
        // Edge cases: one point, no curves.
        acc_curve_png(&[("one".into(), vec![0.5])], &path).unwrap();
        acc_curve_png(&[], &path).unwrap();
        assert_eq!(png_size(&path), CURVE_SIZE);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plots_colour_scale() {
        assert_eq!(accuracy_colour(0.0), RGBColor(255, 255, 255));
        assert_eq!(accuracy_colour(1.0), RGBColor(8, 48, 107));
        assert_eq!(accuracy_colour(0.5), RGBColor(107, 174, 214));
        assert_eq!(accuracy_colour(2.0), accuracy_colour(1.0));
        // Darker as the accuracy grows.
        let lum = |c: RGBColor| c.0 as u32 + c.1 as u32 + c.2 as u32;
        assert!(lum(accuracy_colour(0.3)) > lum(accuracy_colour(0.6)));
    }

    /// Renders one example of each picture to `$REMANENCE_PLOTS_DIR` when it is set (to look at
    /// them), nothing otherwise.
    #[test]
    fn plots_render_examples() {
        let Some(dir) = std::env::var_os("REMANENCE_PLOTS_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        heatmap_png(&example(), &dir.join("heatmap.png")).unwrap();
        let mut p = example();
        p.rows.truncate(2);
        p.initial[1] = None;
        heatmap_png(&p, &dir.join("heatmap-partial.png")).unwrap();
        let curves = vec![
            ("naive".to_string(), vec![0.95, 0.6, 0.45, 0.3]),
            ("replay".to_string(), vec![0.95, 0.85, 0.8, 0.75]),
            ("joint".to_string(), vec![0.96, 0.94, 0.93, 0.92]),
        ];
        acc_curve_png(&curves, &dir.join("acc.png")).unwrap();
    }
}

//! Pictures of the probes (plotters, PNG), each written to a temporary name beside its path and
//! renamed. The build carries no font, so no text is drawn: each picture gets a markdown file
//! beside it (same name, `.md`) saying what the axes and colours are, with the numbers.
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::error::{invalid, ProbeError, Result};
use crate::esp::Convergence;
use crate::memory::{McRun, McSummary};

/// Picture sizes, in pixels.
pub const MC_SIZE: (u32, u32) = (720, 560);
pub const ESP_SIZE: (u32, u32) = (720, 420);
const MARGIN: i32 = 24;
/// Between the two panels of the memory-capacity picture.
const GAP: i32 = 28;

const FRAME: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(225, 225, 225);
const GRID_STRONG: RGBColor = RGBColor(190, 190, 190);
/// MC_k of each seed, their mean, and the band between their minimum and maximum.
pub const RUN_LINE: RGBColor = RGBColor(158, 202, 225);
pub const MEAN_LINE: RGBColor = RGBColor(8, 81, 156);
pub const BAND: RGBColor = RGBColor(222, 235, 247);
/// The cumulative MC, and the bound N.
pub const CUMULATIVE_LINE: RGBColor = RGBColor(230, 85, 13);
pub const BOUND_LINE: RGBColor = RGBColor(203, 24, 29);
/// The median distance of the echo-state pairs.
pub const MEDIAN_LINE: RGBColor = RGBColor(0, 0, 0);
/// Line colours of the pairs, in order.
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

/// The markdown file written beside a picture: `x.png` → `x.md`.
pub fn sidecar_path(png: &Path) -> PathBuf {
    png.with_extension("md")
}

/// Writes `bytes` to a temporary file beside `path`, then renames it onto `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    remanence_cells::io::write_atomic(path, bytes).map_err(|e| ProbeError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// `value` as pretty JSON (with a final newline), written atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ProbeError::File {
        path: path.to_path_buf(),
        msg: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Runs `draw` on a temporary `.png` file beside `path` (the encoder picks the format from the
/// extension), then renames it onto `path`; removes the temporary file on failure.
fn write_png(path: &Path, draw: impl FnOnce(&Path) -> DrawResult) -> Result<()> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{stem}.tmp-{}.png", std::process::id()));
    let res = draw(&tmp)
        .map_err(|e| ProbeError::File {
            path: path.to_path_buf(),
            msg: format!("cannot draw: {e}"),
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| ProbeError::File {
                path: path.to_path_buf(),
                msg: format!("cannot rename {}: {e}", tmp.display()),
            })
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A rectangle of the picture and the data ranges it shows.
#[derive(Clone, Copy)]
struct Panel {
    left: i32,
    right: i32,
    top: i32,
    bottom: i32,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Panel {
    fn px(&self, x: f64) -> i32 {
        let f = if self.x1 > self.x0 {
            (x - self.x0) / (self.x1 - self.x0)
        } else {
            0.5
        };
        self.left + ((self.right - self.left) as f64 * f).round() as i32
    }

    /// Values outside the range are clamped to the frame.
    fn py(&self, y: f64) -> i32 {
        let f = ((y - self.y0) / (self.y1 - self.y0)).clamp(0.0, 1.0);
        self.bottom - ((self.bottom - self.top) as f64 * f).round() as i32
    }

    fn hline(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        y: f64,
        c: RGBColor,
    ) -> DrawResult {
        let py = self.py(y);
        root.draw(&PathElement::new(
            vec![(self.left, py), (self.right, py)],
            c,
        ))?;
        Ok(())
    }

    /// A dashed horizontal line, two pixels thick.
    fn dashed(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        y: f64,
        c: RGBColor,
    ) -> DrawResult {
        let py = self.py(y);
        let mut x = self.left;
        while x < self.right {
            let end = (x + 8).min(self.right);
            root.draw(&PathElement::new(
                vec![(x, py), (end, py)],
                c.stroke_width(2),
            ))?;
            x += 14;
        }
        Ok(())
    }

    fn vline(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        x: f64,
        c: RGBColor,
    ) -> DrawResult {
        let px = self.px(x);
        root.draw(&PathElement::new(
            vec![(px, self.top), (px, self.bottom)],
            c,
        ))?;
        Ok(())
    }

    fn frame(&self, root: &DrawingArea<BitMapBackend, plotters::coord::Shift>) -> DrawResult {
        root.draw(&Rectangle::new(
            [(self.left, self.top), (self.right, self.bottom)],
            FRAME,
        ))?;
        Ok(())
    }

    /// Points `(x, y)` as a polyline; non-finite values break it.
    fn line(
        &self,
        root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
        pts: impl IntoIterator<Item = (f64, f64)>,
        style: ShapeStyle,
    ) -> DrawResult {
        let mut seg: Vec<(i32, i32)> = Vec::new();
        for (x, y) in pts {
            if y.is_finite() {
                seg.push((self.px(x), self.py(y)));
            } else if !seg.is_empty() {
                root.draw(&PathElement::new(std::mem::take(&mut seg), style))?;
            }
        }
        if !seg.is_empty() {
            root.draw(&PathElement::new(seg, style))?;
        }
        Ok(())
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10^m at or above `v` (v > 0).
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A step between vertical grid lines: 1, 2 or 5 times a power of ten, about `n / 10`.
fn grid_step(n: f64) -> f64 {
    let raw = (n / 10.0).max(1.0);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The top of the cumulative panel: 1.2 × the largest cumulative MC rounded up to 1, 2, 2.5 or
/// 5 × 10^m, at most N (at least 1).
fn cumulative_top(cumulative: &[f64], n: f64) -> f64 {
    let top = cumulative.last().copied().unwrap_or(0.0).max(0.0) * 1.2;
    let top = if top > 0.0 { nice_ceiling(top) } else { 1.0 };
    top.min(n.max(1.0)).max(1.0)
}

/// Draws the memory curve to the PNG file `path` ([`MC_SIZE`]) and its description to
/// [`sidecar_path`]`(path)`.
///
/// Top panel: MC_k against k = 1..k_max (x, left to right), y from 0 (bottom) to 1 (top), grid
/// every 0.2; one thin light-blue line per seed, the band between their minimum and maximum in
/// pale blue, the mean in dark blue (with a dot per delay up to 60 delays). Bottom panel: the cumulative
/// mean Σ_{j≤k} MC_j in orange against the same k, y from 0 to Y, grid every Y/5: Y is 1.2 × the
/// total rounded up to 1, 2, 2.5 or 5 × 10^m, capped at N (the number of features, the bound;
/// when Y = N it is drawn as a dashed red line along the top). Vertical grid lines every 1, 2 or
/// 5 × 10^m delays (about ten of them) in both panels.
pub fn memory_capacity_png(runs: &[McRun], summary: &McSummary, path: &Path) -> Result<()> {
    let k_max = summary.per_delay.len();
    if runs.is_empty() || k_max == 0 {
        return Err(invalid("no memory-capacity measurements to draw"));
    }
    let n = summary.bound.n as f64;
    let (w, h) = MC_SIZE;
    let (w, h) = (w as i32, h as i32);
    let split = MARGIN + (h - 2 * MARGIN - GAP) * 3 / 5;
    let x1 = k_max as f64;
    let top = Panel {
        left: MARGIN,
        right: w - MARGIN,
        top: MARGIN,
        bottom: split,
        x0: 1.0,
        x1,
        y0: 0.0,
        y1: 1.0,
    };
    let mean: Vec<f64> = summary.per_delay.iter().map(|s| s.mean).collect();
    let cumulative: Vec<f64> = mean
        .iter()
        .scan(0.0, |acc, v| {
            *acc += v;
            Some(*acc)
        })
        .collect();
    let y_top = cumulative_top(&cumulative, n);
    let bottom = Panel {
        top: split + GAP,
        bottom: h - MARGIN,
        y1: y_top,
        ..top
    };
    let step = grid_step(x1);
    let draw = |tmp: &Path| -> DrawResult {
        let root = BitMapBackend::new(tmp, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        for p in [&top, &bottom] {
            let mut k = step;
            while k <= x1 {
                p.vline(&root, k, GRID)?;
                k += step;
            }
        }
        for i in 1..5 {
            top.hline(&root, 0.2 * i as f64, GRID_STRONG)?;
            bottom.hline(&root, bottom.y1 * 0.2 * i as f64, GRID_STRONG)?;
        }
        // Band between the seeds' minimum and maximum.
        if runs.len() > 1 {
            let mut poly: Vec<(i32, i32)> = summary
                .per_delay
                .iter()
                .enumerate()
                .map(|(i, s)| (top.px(i as f64 + 1.0), top.py(s.max)))
                .collect();
            poly.extend(
                summary
                    .per_delay
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, s)| (top.px(i as f64 + 1.0), top.py(s.min))),
            );
            root.draw(&Polygon::new(poly, BAND.filled()))?;
        }
        for r in runs {
            top.line(
                &root,
                r.estimate
                    .per_delay
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (i as f64 + 1.0, v)),
                RUN_LINE.stroke_width(1),
            )?;
        }
        top.line(
            &root,
            mean.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)),
            MEAN_LINE.stroke_width(2),
        )?;
        if k_max <= 60 {
            for (i, &v) in mean.iter().enumerate() {
                root.draw(&Circle::new(
                    (top.px(i as f64 + 1.0), top.py(v)),
                    2,
                    MEAN_LINE.filled(),
                ))?;
            }
        }
        if n <= y_top {
            bottom.dashed(&root, n, BOUND_LINE)?;
        }
        bottom.line(
            &root,
            cumulative
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 + 1.0, v)),
            CUMULATIVE_LINE.stroke_width(2),
        )?;
        top.frame(&root)?;
        bottom.frame(&root)?;
        root.present()?;
        Ok(())
    };
    write_png(path, draw)?;

    let s = &summary.mc;
    let mut md = format!(
        "Memory curve. Top: MC_k (y, 0 at the bottom to 1 at the top, grid every 0.2) against the \
         delay k = 1..{k_max} (x, left to right; vertical grid every {step} delays). Thin light \
         blue: each of the {} seeds; pale band: their minimum to maximum; dark blue: the \
         mean. Bottom: the cumulative mean Σ_{{j≤k}} MC_j (orange) against the same k, y from 0 \
         to {y_top} (grid every {}); {}.\n\n\
         MC = {:.4} ± {:.4} (mean ± sample standard deviation over seeds; min {:.4}, max \
         {:.4}); bound check MC ≤ N + {:.4}: {}; noise floor of {k_max} delays without \
         memory: {:.4}.\n\n| k | mean MC_k | std | min | max | cumulative |\n|---:|---:|---:|---:|---:|---:|\n",
        runs.len(),
        y_top / 5.0,
        if n <= y_top {
            format!("dashed red along the top: the bound N = {}", summary.bound.n)
        } else {
            format!("the bound N = {} lies above the panel", summary.bound.n)
        },
        s.mean,
        s.std,
        s.min,
        s.max,
        summary.bound.margin,
        if summary.bound.holds { "holds" } else { "FAILS" },
        summary.noise_floor,
    );
    for (k, (p, c)) in summary.per_delay.iter().zip(&cumulative).enumerate() {
        md.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} |\n",
            k + 1,
            p.mean,
            p.std,
            p.min,
            p.max,
            c
        ));
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// The decades of the distance picture: from the smallest positive ratio d(t)/d(0) (at least
/// 10⁻¹⁸), or 10⁻¹ below the tolerance if lower, to at least 10⁰.
fn decades(c: &Convergence, tolerance: f64) -> (f64, f64) {
    let mut lo = tolerance.log10().floor() - 1.0;
    let mut hi: f64 = 0.0;
    for d in &c.distances {
        for &v in d {
            let r = v / d[0];
            if r > 0.0 && r.is_finite() {
                lo = lo.min(r.log10().floor());
                hi = hi.max(r.log10().ceil());
            }
        }
    }
    (lo.max(-18.0), hi)
}

/// Draws the echo-state convergence to the PNG file `path` ([`ESP_SIZE`]) and its description
/// to [`sidecar_path`]`(path)`.
///
/// x: step t = 0..steps, left to right (vertical grid every 1, 2 or 5 × 10^m steps); y:
/// log₁₀ of the relative distance d_p(t)/d_p(0) of each pair of runs, from the lowest decade
/// reached (bottom) to the highest (top, at least 10⁰), a grid line per decade (every second
/// decade past 20). One thin line per pair in the [`PALETTE`] colours, the median over pairs
/// thick black, the tolerance a dashed red line. A distance of exactly 0 sits on the bottom edge.
pub fn esp_png(c: &Convergence, tolerance: f64, path: &Path) -> Result<()> {
    if c.distances.is_empty() || c.steps == 0 {
        return Err(invalid("no echo-state distances to draw"));
    }
    let (lo, hi) = decades(c, tolerance);
    let (w, h) = ESP_SIZE;
    let p = Panel {
        left: MARGIN,
        right: w as i32 - MARGIN,
        top: MARGIN,
        bottom: h as i32 - MARGIN,
        x0: 0.0,
        x1: c.steps as f64,
        y0: lo,
        y1: hi.max(lo + 1.0),
    };
    let log_ratio = |d: &[f64], t: usize| {
        let r = d[t] / d[0];
        if r > 0.0 {
            r.log10()
        } else {
            lo
        }
    };
    let median: Vec<f64> = (0..=c.steps)
        .map(|t| {
            let mut v: Vec<f64> = c.distances.iter().map(|d| log_ratio(d, t)).collect();
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            if v.len() % 2 == 1 {
                v[m]
            } else {
                0.5 * (v[m - 1] + v[m])
            }
        })
        .collect();
    let step = grid_step(c.steps as f64);
    let every = if p.y1 - p.y0 > 20.0 { 2.0 } else { 1.0 };
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut t = step;
        while t <= c.steps as f64 {
            p.vline(&root, t, GRID)?;
            t += step;
        }
        let mut y = p.y0 + every;
        while y < p.y1 {
            let colour = if y == 0.0 { FRAME } else { GRID_STRONG };
            p.hline(&root, y, colour)?;
            y += every;
        }
        for (k, d) in c.distances.iter().enumerate() {
            let (r, g, b) = PALETTE[k % PALETTE.len()];
            p.line(
                &root,
                (0..=c.steps).map(|t| (t as f64, log_ratio(d, t))),
                RGBColor(r, g, b).stroke_width(1),
            )?;
        }
        p.line(
            &root,
            median.iter().enumerate().map(|(t, &v)| (t as f64, v)),
            MEDIAN_LINE.stroke_width(3),
        )?;
        p.dashed(&root, tolerance.log10(), BOUND_LINE)?;
        p.frame(&root)?;
        root.present()?;
        Ok(())
    })?;

    let mut md = format!(
        "Echo-state check: distance between two runs from different initial states on the same \
         input, relative to its start. x: step t = 0..{} (left to right; vertical grid every \
         {step} steps); y: log10(d(t)/d(0)) from {lo} (bottom) to {} (top), a grid line every \
         {every} decade{}. Thin coloured lines: the {} pairs (colours in order: {}); thick \
         black: their median; dashed red: the tolerance {tolerance:e}. A distance of exactly 0 \
         is drawn on the bottom edge.\n\nConverged: {} (largest final ratio {:.3e}); steps to \
         the tolerance: {}; per-step contraction factor (median over pairs): {}.\n\n| pair | \
         d(0) | d(T) | d(T)/d(0) |\n|---:|---:|---:|---:|\n",
        c.steps,
        p.y1,
        if every == 1.0 { "" } else { "s" },
        c.pairs,
        PALETTE
            .iter()
            .take(c.pairs.min(PALETTE.len()))
            .map(|(r, g, b)| format!("#{r:02x}{g:02x}{b:02x}"))
            .collect::<Vec<_>>()
            .join(", "),
        if c.converged { "yes" } else { "no" },
        c.max_final_ratio,
        c.steps_to_tolerance
            .map_or("never".into(), |t| t.to_string()),
        c.rate.map_or("–".into(), |r| format!("{r:.4}")),
    );
    for (k, d) in c.distances.iter().enumerate() {
        md.push_str(&format!(
            "| {k} | {:.4e} | {:.4e} | {:.3e} |\n",
            d[0],
            d[c.steps],
            d[c.steps] / d[0]
        ));
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// [`write_png`] for the pictures drawn in other modules of the crate ([`crate::figures`]).
pub(crate) fn write_png_for(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    write_png(path, draw)
}

//! Pictures of the distinguishability and trajectory-length probes. As in [`crate::plots`], no
//! text is drawn (the build carries no font): each PNG gets a markdown file beside it (same
//! name, `.md`) with its axes, colours and numbers, and every file is written to a temporary
//! name and renamed.
use std::path::Path;

use plotters::prelude::*;

use crate::distinguish::DistReport;
use crate::error::{invalid, Result};
use crate::plots::{sidecar_path, write_atomic, write_png_for};
use crate::trajectory::{Act, OdeModel, TrajReport};

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

const FRAME: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(215, 215, 215);
const MARGIN: i32 = 24;

/// Anchors of the heatmap's colour scale, low to high (viridis's dark purple, blue, teal,
/// green, yellow), linearly interpolated.
pub const SCALE: [(u8, u8, u8); 5] = [
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (253, 231, 37),
];

/// The colour of `f` in [0, 1] on [`SCALE`] (clamped).
pub fn scale_colour(f: f64) -> RGBColor {
    let f = if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = f * (SCALE.len() - 1) as f64;
    let i = (x.floor() as usize).min(SCALE.len() - 2);
    let t = x - i as f64;
    let (a, b) = (SCALE[i], SCALE[i + 1]);
    let mixc = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * t).round() as u8;
    RGBColor(mixc(a.0, b.0), mixc(a.1, b.1), mixc(a.2, b.2))
}

/// Line colours of the three models: Neural ODE blue, CT-RNN orange, LTC green.
pub fn model_colour(m: OdeModel) -> RGBColor {
    match m {
        OdeModel::NeuralOde => RGBColor(31, 119, 180),
        OdeModel::Ctrnn => RGBColor(255, 127, 14),
        OdeModel::Ltc => RGBColor(44, 160, 44),
    }
}

/// Width of the distinguishability picture; its height is 2·24 + 36 per row (at least 240).
pub const DIST_WIDTH: u32 = 760;
const BAR_GAP: i32 = 18;
const BAR_WIDTH: i32 = 22;

/// The lengths the description's table shows (those on the report's grid).
fn table_lengths(report: &DistReport) -> Vec<(usize, usize)> {
    [
        1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
    ]
    .into_iter()
    .filter_map(|l| report.lengths.iter().position(|&x| x == l).map(|j| (l, j)))
    .chain(std::iter::once((
        report.max_length,
        report.lengths.len() - 1,
    )))
    .fold(Vec::new(), |mut v, p| {
        if !v.iter().any(|q: &(usize, usize)| q.0 == p.0) {
            v.push(p);
        }
        v
    })
}

/// Draws D(l, k) as a heatmap to the PNG `path` and its description beside it.
///
/// x: word length l on a log axis, from 0.5 (left edge) to L + 0.5 (right edge); the cell of a
/// reported length l_j spans [l_j − ½, l_{j+1} − ½), so every l ≤ 20 has its own column and
/// longer ones share the value of the reported length at their left. Thin grey ticks under the
/// map at 1, 2, 5 × 10^m. y: one row per width k, the smallest at the bottom, equal heights.
/// Colour: the mean D on [`SCALE`], 0 (dark purple) to the largest mean on the map (yellow);
/// the bar at the right shows the scale from 0 (bottom) to that maximum (top).
pub fn distinguish_png(report: &DistReport, path: &Path) -> Result<()> {
    if report.rows.is_empty() || report.lengths.is_empty() {
        return Err(invalid("no distinguishability values to draw"));
    }
    let nrows = report.rows.len() as i32;
    let h = (2 * MARGIN + 36 * nrows).max(240) as u32;
    let w = DIST_WIDTH;
    let left = MARGIN;
    let right = w as i32 - MARGIN - BAR_GAP - BAR_WIDTH;
    let (top, bottom) = (MARGIN, h as i32 - MARGIN);
    let lmax = report.max_length as f64;
    let x0 = 0.5f64.log10();
    let x1 = (lmax + 0.5).log10();
    let px = |l: f64| left + ((right - left) as f64 * (l.log10() - x0) / (x1 - x0)).round() as i32;
    let row_h = (bottom - top) as f64 / nrows as f64;
    let d_max = report
        .rows
        .iter()
        .flat_map(|r| r.mean.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let norm = if d_max > 0.0 { d_max } else { 1.0 };
    write_png_for(path, |tmp| -> DrawResult {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        for (ri, row) in report.rows.iter().enumerate() {
            // Smallest k at the bottom.
            let y_hi = bottom as f64 - row_h * ri as f64;
            let y_lo = y_hi - row_h;
            for (j, &l) in report.lengths.iter().enumerate() {
                let a = px(l as f64 - 0.5);
                let b = match report.lengths.get(j + 1) {
                    Some(&n) => px(n as f64 - 0.5),
                    None => px(lmax + 0.5),
                };
                root.draw(&Rectangle::new(
                    [(a, y_lo.round() as i32), (b, y_hi.round() as i32)],
                    scale_colour(row.mean[j] / norm).filled(),
                ))?;
            }
        }
        // Ticks at 1, 2, 5 × 10^m under the map.
        let mut dec = 1.0;
        while dec <= lmax {
            for m in [1.0, 2.0, 5.0] {
                let l = m * dec;
                if l <= lmax {
                    let x = px(l);
                    let len = if m == 1.0 { 8 } else { 4 };
                    root.draw(&PathElement::new(
                        vec![(x, bottom + 1), (x, bottom + 1 + len)],
                        FRAME,
                    ))?;
                }
            }
            dec *= 10.0;
        }
        root.draw(&Rectangle::new([(left, top), (right, bottom)], FRAME))?;
        // Colour bar.
        let bx = right + BAR_GAP;
        for y in top..bottom {
            let f = (bottom - y) as f64 / (bottom - top) as f64;
            root.draw(&PathElement::new(
                vec![(bx, y), (bx + BAR_WIDTH, y)],
                scale_colour(f),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, top), (bx + BAR_WIDTH, bottom)],
            FRAME,
        ))?;
        root.present()?;
        Ok(())
    })?;

    let shown = table_lengths(report);
    let mut md = format!(
        "Distinguishability D(l, k) of {} ({} initialisation; {}), mean over {} draw{} per width.\n\n\
         Heatmap: x is the word length l on a log axis from 0.5 (left edge) to {} (right edge), \
         ticks under the map at 1, 2, 5 × 10^m (long ticks at the decades); every l ≤ 20 has \
         its own column, longer lengths take the value of the reported length at their left. \
         y: one row per width k = {} (bottom to top). Colour: mean D from 0 (dark purple) \
         through blue, teal and green to {d_max:.4} (yellow), the largest mean on the map; the \
         bar on the right is the scale, 0 at the bottom.\n\nState: {}.\n\n| k |",
        report.cell,
        report.init,
        report.init_note,
        report.rows[0].draws,
        if report.rows[0].draws == 1 { "" } else { "s" },
        lmax + 0.5,
        report
            .rows
            .iter()
            .map(|r| r.width.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        report.state,
    );
    for (l, _) in &shown {
        md.push_str(&format!(" D({l}) |"));
    }
    md.push_str(" draws with D(L) > 1e-3 |\n|---:|");
    for _ in &shown {
        md.push_str("---:|");
    }
    md.push_str("---:|\n");
    for r in &report.rows {
        md.push_str(&format!("| {} |", r.width));
        for (_, j) in &shown {
            md.push_str(&format!(" {:.4} |", r.mean[*j]));
        }
        md.push_str(&format!(" {:.1}% |\n", 100.0 * r.remembering_at_max));
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// Panel size of the PCA picture.
pub const PCA_PANEL: i32 = 170;
const PCA_GAP: i32 = 12;
/// Most layers the PCA picture shows (evenly spaced, the first and last among them).
pub const PCA_MAX_COLUMNS: usize = 6;

/// The layers shown: all up to [`PCA_MAX_COLUMNS`], else evenly spaced with both ends.
pub fn shown_layers(layers: usize) -> Vec<usize> {
    if layers <= PCA_MAX_COLUMNS {
        return (0..layers).collect();
    }
    let mut v: Vec<usize> = (0..PCA_MAX_COLUMNS)
        .map(|i| ((i * (layers - 1)) as f64 / (PCA_MAX_COLUMNS - 1) as f64).round() as usize)
        .collect();
    v.dedup();
    v
}

/// `c` mixed with white: t = 0 white, 1 the colour.
fn tint(c: RGBColor, t: f64) -> RGBColor {
    let m = |x: u8| (255.0 - (255.0 - x as f64) * t).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// Draws the first draw's trajectories for one activation and σ_w, projected on each layer's
/// first two principal components, to the PNG `path` and its description beside it: one row
/// per model (in the report's order, top to bottom), one column per shown layer (left to
/// right); each panel scaled on its own with equal axes, the curve going from pale (t = 0) to
/// the model's full colour (t = t_end), a dot at the start.
pub fn trajectory_pca_png(report: &TrajReport, act: Act, sigma_w: f64, path: &Path) -> Result<()> {
    let s = &report.settings;
    let cols = shown_layers(s.layers);
    let runs: Vec<_> = s
        .models
        .iter()
        .filter_map(|&m| {
            report.runs.iter().find(|r| {
                r.model == m && r.activation == act && r.sigma_w == sigma_w && r.draw == 0
            })
        })
        .collect();
    if runs.is_empty() {
        return Err(invalid(format!(
            "no trajectories of {act} at σ_w {sigma_w} to draw"
        )));
    }
    let w = (2 * MARGIN + cols.len() as i32 * (PCA_PANEL + PCA_GAP) - PCA_GAP) as u32;
    let h = (2 * MARGIN + runs.len() as i32 * (PCA_PANEL + PCA_GAP) - PCA_GAP) as u32;
    write_png_for(path, |tmp| -> DrawResult {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        for (ri, run) in runs.iter().enumerate() {
            for (ci, &l) in cols.iter().enumerate() {
                let x0 = MARGIN + ci as i32 * (PCA_PANEL + PCA_GAP);
                let y0 = MARGIN + ri as i32 * (PCA_PANEL + PCA_GAP);
                panel(
                    &root,
                    &run.layers[l].projection,
                    x0,
                    y0,
                    model_colour(run.model),
                )?;
            }
        }
        root.present()?;
        Ok(())
    })?;
    let mut md = format!(
        "Trajectories of the circle input (sin t, cos t), t in [0, {:.4}], through random \
         networks of width {} with {act} (σ_w = {sigma_w}, σ_b = {}, draw 0), each layer's \
         state projected on its first two principal components. Rows, top to bottom: {}. \
         Columns, left to right: layer{} {}. Each panel is scaled on its own (equal axes, a \
         grey frame); the curve runs from pale (t = 0, a dot) to the model's full colour (blue \
         Neural ODE, orange CT-RNN, green LTC).\n\n| model | layer | PCA arc length | variance \
         on 2 PCs | full-space arc length |\n|---|---:|---:|---:|---:|\n",
        s.t_end,
        s.width,
        s.sigma_b,
        runs.iter()
            .map(|r| r.model.name())
            .collect::<Vec<_>>()
            .join(", "),
        if cols.len() == 1 { "" } else { "s" },
        cols.iter()
            .map(|l| (l + 1).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    for r in &runs {
        for &l in &cols {
            let x = &r.layers[l];
            md.push_str(&format!(
                "| {} | {} | {:.4} | {:.1}% | {:.4} |\n",
                r.model,
                l + 1,
                x.pca_length,
                100.0 * x.explained,
                x.full_length
            ));
        }
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

/// Draws a run's trajectory on the circle, one panel per layer (left to right, as
/// [`trajectory_pca_png`] draws one row in black), and its description beside it.
pub fn subject_pca_png(t: &crate::trajectory::SubjectTrajectory, path: &Path) -> Result<()> {
    if t.layers.is_empty() {
        return Err(invalid("no layers to draw"));
    }
    let cols = shown_layers(t.layers.len());
    let w = (2 * MARGIN + cols.len() as i32 * (PCA_PANEL + PCA_GAP) - PCA_GAP) as u32;
    let h = (2 * MARGIN + PCA_PANEL) as u32;
    write_png_for(path, |tmp| -> DrawResult {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        for (ci, &l) in cols.iter().enumerate() {
            let x0 = MARGIN + ci as i32 * (PCA_PANEL + PCA_GAP);
            panel(
                &root,
                &t.layers[l].projection,
                x0,
                MARGIN,
                RGBColor(0, 0, 0),
            )?;
        }
        root.present()?;
        Ok(())
    })?;
    let mut md = format!(
        "Trajectory of the run's {} model ({} units per layer) on the circle (sin t, cos t), t \
         in [0, {:.4}] at {} samples ({}), each layer's h projected on its first two principal \
         components. Panels, left to right: layer{} {}; each scaled on its own (equal axes, a \
         grey frame), the curve pale at t = 0 (a dot) to black at the end.\n\n| layer | PCA \
         arc length | variance on 2 PCs | full-space arc length |\n|---:|---:|---:|---:|\n",
        t.subject.cell,
        t.subject.hidden_size,
        t.t_end,
        t.samples,
        t.note,
        if cols.len() == 1 { "" } else { "s" },
        cols.iter()
            .map(|l| (l + 1).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    for &l in &cols {
        let x = &t.layers[l];
        md.push_str(&format!(
            "| {} | {:.4} | {:.1}% | {:.4} |\n",
            l + 1,
            x.pca_length,
            100.0 * x.explained,
            x.full_length
        ));
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

fn panel(root: &Area, p: &crate::linalg::Mat, x0: i32, y0: i32, colour: RGBColor) -> DrawResult {
    root.draw(&Rectangle::new(
        [(x0, y0), (x0 + PCA_PANEL, y0 + PCA_PANEL)],
        GRID,
    ))?;
    let n = p.rows();
    if n == 0 {
        return Ok(());
    }
    let col = |c: usize| -> (f64, f64) {
        (0..n)
            .map(|i| if p.cols() > c { p[(i, c)] } else { 0.0 })
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let ((ax, bx), (ay, by)) = (col(0), col(1));
    let span = (bx - ax).max(by - ay);
    let span = if span > 0.0 && span.is_finite() {
        span
    } else {
        1.0
    };
    let inner = (PCA_PANEL - 16) as f64;
    let (cx, cy) = ((ax + bx) / 2.0, (ay + by) / 2.0);
    let pt = |i: usize| -> (i32, i32) {
        let x = p[(i, 0)];
        let y = if p.cols() > 1 { p[(i, 1)] } else { 0.0 };
        (
            x0 + PCA_PANEL / 2 + ((x - cx) / span * inner).round() as i32,
            y0 + PCA_PANEL / 2 - ((y - cy) / span * inner).round() as i32,
        )
    };
    for i in 1..n {
        let t = 0.25 + 0.75 * i as f64 / (n - 1) as f64;
        root.draw(&PathElement::new(
            vec![pt(i - 1), pt(i)],
            tint(colour, t).stroke_width(2),
        ))?;
    }
    root.draw(&Circle::new(pt(0), 3, tint(colour, 0.4).filled()))?;
    Ok(())
}

/// Size of the trajectory-length picture.
pub const LENGTH_SIZE: (u32, u32) = (760, 560);

/// Draws the mean PCA arc length to the PNG `path` and its description beside it: one panel
/// per activation (in the report's order, left to right then top to bottom, two columns), all
/// with one log₁₀ y axis. With more than one layer, x is the layer (1 at the left) and each
/// model has one line per σ_w, paler for smaller σ_w; with one layer, x is the σ_w values in
/// order (evenly spaced) and each model one line. Colours: Neural ODE blue, CT-RNN orange,
/// LTC green; a dot on every value.
pub fn trajectory_length_png(report: &TrajReport, path: &Path) -> Result<()> {
    let s = &report.settings;
    if report.summaries.is_empty() {
        return Err(invalid("no trajectory lengths to draw"));
    }
    let by_layer = s.layers > 1;
    let xs: usize = if by_layer { s.layers } else { s.sigma_w.len() };
    let vals: Vec<f64> = report
        .summaries
        .iter()
        .flat_map(|x| x.pca_length.iter().map(|p| p.mean))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v.log10()), b.max(v.log10()))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    } else {
        (0.0, 1.0)
    };
    let (w, h) = LENGTH_SIZE;
    let ncol = 2.min(s.activations.len()) as i32;
    let nrow = s.activations.len().div_ceil(2) as i32;
    let pw = (w as i32 - 2 * MARGIN - (ncol - 1) * MARGIN) / ncol;
    let ph = (h as i32 - 2 * MARGIN - (nrow - 1) * MARGIN) / nrow;
    write_png_for(path, |tmp| -> DrawResult {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        for (ai, &act) in s.activations.iter().enumerate() {
            let x0 = MARGIN + (ai as i32 % ncol) * (pw + MARGIN);
            let y0 = MARGIN + (ai as i32 / ncol) * (ph + MARGIN);
            let px = |i: usize| {
                if xs <= 1 {
                    x0 + pw / 2
                } else {
                    x0 + 10 + ((pw - 20) as f64 * i as f64 / (xs - 1) as f64).round() as i32
                }
            };
            let py = |v: f64| {
                let f = ((v.log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
                y0 + ph - (ph as f64 * f).round() as i32
            };
            let mut d = lo + 1.0;
            while d < hi {
                let y = y0 + ph - (ph as f64 * (d - lo) / (hi - lo)).round() as i32;
                root.draw(&PathElement::new(vec![(x0, y), (x0 + pw, y)], GRID))?;
                d += 1.0;
            }
            for &m in &s.models {
                let lines: Vec<(f64, Vec<f64>)> = if by_layer {
                    s.sigma_w
                        .iter()
                        .enumerate()
                        .filter_map(|(si, &sw)| {
                            report
                                .summaries
                                .iter()
                                .find(|x| x.model == m && x.activation == act && x.sigma_w == sw)
                                .map(|x| {
                                    (
                                        0.35 + 0.65 * (si + 1) as f64 / s.sigma_w.len() as f64,
                                        x.pca_length.iter().map(|p| p.mean).collect(),
                                    )
                                })
                        })
                        .collect()
                } else {
                    vec![(
                        1.0,
                        s.sigma_w
                            .iter()
                            .filter_map(|&sw| {
                                report
                                    .summaries
                                    .iter()
                                    .find(|x| {
                                        x.model == m && x.activation == act && x.sigma_w == sw
                                    })
                                    .map(|x| x.pca_length[0].mean)
                            })
                            .collect(),
                    )]
                };
                for (shade, v) in lines {
                    let c = tint(model_colour(m), shade);
                    let pts: Vec<(i32, i32)> = v
                        .iter()
                        .enumerate()
                        .filter(|(_, y)| **y > 0.0 && y.is_finite())
                        .map(|(i, &y)| (px(i), py(y)))
                        .collect();
                    root.draw(&PathElement::new(pts.clone(), c.stroke_width(2)))?;
                    for p in pts {
                        root.draw(&Circle::new(p, 3, c.filled()))?;
                    }
                }
            }
            root.draw(&Rectangle::new([(x0, y0), (x0 + pw, y0 + ph)], FRAME))?;
        }
        root.present()?;
        Ok(())
    })?;

    let mut md = format!(
        "Trajectory length (arc length of each layer's trajectory projected on its first two \
         principal components), mean over {} draw{} of width-{} networks, circle input over [0, \
         {:.4}], σ_b = {}. Panels (left to right, then top to bottom): {}. y: log10 of the mean \
         length from {lo} (bottom) to {hi} (top), a grey line per decade. {}Colours: Neural ODE \
         blue, CT-RNN orange, LTC green; a dot on every value.\n\n| activation | σ_w | model | \
         {} | depth (accepted steps per Δt = {}) | paper's depth |\n|---|---:|---|{}---:|---:|\n",
        s.draws,
        if s.draws == 1 { "" } else { "s" },
        s.width,
        s.t_end,
        s.sigma_b,
        s.activations
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", "),
        if by_layer {
            format!(
                "x: layer 1..{} (left to right); one line per model and σ_w ({}), paler for \
                 smaller σ_w. ",
                s.layers,
                s.sigma_w
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "x: σ_w = {} (evenly spaced, left to right); one line per model. ",
                s.sigma_w
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        (1..=s.layers)
            .map(|l| format!("layer {l}"))
            .collect::<Vec<_>>()
            .join(" | "),
        s.depth_dt,
        "---:|".repeat(s.layers),
    );
    for x in &report.summaries {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} ± {:.2} | {} |\n",
            x.activation,
            x.sigma_w,
            x.model,
            x.pca_length
                .iter()
                .map(|p| format!("{:.3}", p.mean))
                .collect::<Vec<_>>()
                .join(" | "),
            x.depth.mean,
            x.depth.std,
            x.paper_depth
        ));
    }
    write_atomic(&sidecar_path(path), md.as_bytes())
}

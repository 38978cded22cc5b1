//! The pictures and output files: written atomically (no temporary file left), the sizes
//! stated, the colours of each element present where they should be, a description beside each.
mod common;

use std::path::Path;

use common::{orthogonal, srn, temp_dir, uniform};
use remanence_cells::Activation;
use remanence_probes::esp::{self, EspSettings};
use remanence_probes::memory::{self, McSettings, McSummary};
use remanence_probes::plots::{
    esp_png, memory_capacity_png, sidecar_path, write_json, BOUND_LINE, CUMULATIVE_LINE, ESP_SIZE,
    MC_SIZE, MEAN_LINE, MEDIAN_LINE,
};

/// Width, height and RGB pixels of a PNG.
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn count(px: &[[u8; 3]], c: plotters::style::RGBColor) -> usize {
    px.iter().filter(|p| **p == [c.0, c.1, c.2]).count()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn the_memory_curve_is_drawn_with_its_description() {
    let dir = temp_dir("mc");
    let n = 6;
    let subject = srn(
        &orthogonal(n, 1).scaled(0.8),
        &uniform(n, 0.5, 2),
        &[0.0; 6],
        Activation::Tanh,
    );
    let s = McSettings {
        train: 500,
        test: 300,
        ..McSettings::for_features(n)
    };
    let runs = memory::run(&subject, &s, &[0, 1, 2], &mut |_| {}).unwrap();
    let summary = McSummary::of(&runs, &s).unwrap();
    let png = dir.join("memory-capacity.png");
    memory_capacity_png(&runs, &summary, &png).unwrap();
    write_json(&dir.join("memory-capacity.json"), &runs).unwrap();
    assert_eq!(
        files(&dir),
        [
            "memory-capacity.json",
            "memory-capacity.md",
            "memory-capacity.png"
        ]
    );
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), MC_SIZE);
    assert!(count(&px, MEAN_LINE) > 100);
    assert!(count(&px, CUMULATIVE_LINE) > 100);
    assert!(count(&px, BOUND_LINE) > 100);
    // The bound is the top edge of the lower panel: its dashes sit on one row.
    let rows: std::collections::BTreeSet<u32> = px
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == [BOUND_LINE.0, BOUND_LINE.1, BOUND_LINE.2])
        .map(|(i, _)| i as u32 / w)
        .collect();
    assert!(rows.len() <= 3, "{rows:?}");
    let md = std::fs::read_to_string(sidecar_path(&png)).unwrap();
    assert!(md.contains("MC = ") && md.contains("| 12 |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("memory-capacity.json")).unwrap())
            .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["per_delay"].as_array().unwrap().len(), 12);
    // Nothing to draw is an error, and leaves nothing behind.
    let empty = McSummary {
        per_delay: vec![],
        ..summary
    };
    assert!(memory_capacity_png(&runs, &empty, &dir.join("x.png")).is_err());
    assert_eq!(files(&dir).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_distance_picture_is_drawn_with_its_description() {
    let dir = temp_dir("esp");
    let subject = srn(
        &orthogonal(5, 3).scaled(0.6),
        &uniform(5, 1.0, 4),
        &[0.0; 5],
        Activation::Tanh,
    );
    let settings = EspSettings {
        pairs: 4,
        steps: 80,
        ..EspSettings::default()
    };
    let rep = esp::run(&subject, &settings, 0, &mut |_| {}).unwrap();
    let png = dir.join("esp-distance.png");
    esp_png(&rep.convergence, settings.tolerance, &png).unwrap();
    assert_eq!(files(&dir), ["esp-distance.md", "esp-distance.png"]);
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), ESP_SIZE);
    assert!(count(&px, MEDIAN_LINE) > 100);
    assert!(count(&px, BOUND_LINE) > 50);
    // The median falls from the top left towards the bottom right: black pixels in the left
    // tenth sit higher than those in the right tenth.
    let mean_row = |x0: u32, x1: u32| {
        let ys: Vec<u32> = px
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                let x = *i as u32 % w;
                **p == [0, 0, 0] && x >= x0 && x < x1
            })
            .map(|(i, _)| i as u32 / w)
            .collect();
        ys.iter().sum::<u32>() as f64 / ys.len().max(1) as f64
    };
    assert!(mean_row(30, 90) < mean_row(600, 690));
    let md = std::fs::read_to_string(sidecar_path(&png)).unwrap();
    assert!(
        md.contains("Converged: yes") && md.contains("| 3 |"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_capacity_far_below_its_bound_gets_a_panel_of_its_own_size() {
    // Two delay taps among twenty unrelated features: MC ≈ 2 of N = 20 (2.13 with the chance
    // correlations of the other 38 delays), so the cumulative panel ends at 5 (1.2 × 2.13 rounded
    // up to 1, 2, 2.5 or 5 × 10^m) and the bound is not drawn.
    let dir = temp_dir("mc-small");
    let s = McSettings {
        train: 600,
        test: 400,
        ..McSettings::for_features(20)
    };
    let u = uniform(s.steps(), 0.8, 1);
    let noise = uniform(s.steps() * 18, 1.0, 2);
    let mut x = remanence_probes::Mat::zeros(s.steps(), 20);
    for t in 0..s.steps() {
        x[(t, 0)] = u[t];
        x[(t, 1)] = if t > 0 { u[t - 1] } else { 0.0 };
        for j in 2..20 {
            x[(t, j)] = noise[t * 18 + j - 2];
        }
    }
    let e = memory::memory_capacity(&x, &u, &s).unwrap();
    assert!((e.total - 2.0).abs() < 0.2, "{}", e.total);
    let runs = vec![memory::McRun {
        seed: 0,
        estimate: e,
    }];
    let summary = McSummary::of(&runs, &s).unwrap();
    let png = dir.join("mc.png");
    memory_capacity_png(&runs, &summary, &png).unwrap();
    let (_, _, px) = decode(&png);
    assert_eq!(count(&px, BOUND_LINE), 0);
    assert!(count(&px, CUMULATIVE_LINE) > 100);
    let md = std::fs::read_to_string(sidecar_path(&png)).unwrap();
    assert!(
        md.contains("to 5 (grid every 1)") && md.contains("lies above"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

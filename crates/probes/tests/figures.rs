//! The pictures of the distinguishability and trajectory-length probes: sizes, the colours of
//! each element present, no temporary file left, a description beside each.
mod common;

use std::path::Path;

use common::{config, temp_dir};
use plotters::style::RGBColor;
use remanence_cells::{CellKind, Kernel};
use remanence_probes::distinguish::{heatmap, DistSettings, Init};
use remanence_probes::figures::{
    distinguish_png, model_colour, scale_colour, shown_layers, trajectory_length_png,
    trajectory_pca_png, DIST_WIDTH, LENGTH_SIZE, SCALE,
};
use remanence_probes::plots::sidecar_path;
use remanence_probes::trajectory::{self, Act, OdeModel, TrajSettings};

fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn count(px: &[[u8; 3]], c: RGBColor) -> usize {
    px.iter().filter(|p| **p == [c.0, c.1, c.2]).count()
}

fn only(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn the_colour_scale_runs_from_its_first_anchor_to_its_last() {
    let (a, b) = (SCALE[0], SCALE[SCALE.len() - 1]);
    assert_eq!(scale_colour(0.0), RGBColor(a.0, a.1, a.2));
    assert_eq!(scale_colour(1.0), RGBColor(b.0, b.1, b.2));
    assert_eq!(scale_colour(7.0), scale_colour(1.0));
    assert_eq!(scale_colour(f64::NAN), scale_colour(0.0));
    assert_eq!(shown_layers(3), vec![0, 1, 2]);
    let s = shown_layers(20);
    assert_eq!((s[0], *s.last().unwrap(), s.len()), (0, 19, 6));
}

#[test]
fn the_heatmap_is_drawn_with_its_description() {
    let dir = temp_dir("dist-fig");
    let s = DistSettings {
        max_length: 300,
        widths: vec![1, 3, 6],
        draws: 8,
        init: Init::Normal,
        threads: 1,
    };
    let rep = heatmap(
        &config(CellKind::Gru, 3, 1, Kernel::Auto).rnn,
        &s,
        2,
        &mut |_| {},
    )
    .unwrap();
    let png = dir.join("d.png");
    distinguish_png(&rep, &png).unwrap();
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), (DIST_WIDTH, 240));
    // The largest mean is drawn in the scale's top colour, zero in its bottom one (the bar).
    assert!(count(&px, scale_colour(1.0)) > 100);
    assert!(count(&px, scale_colour(0.0)) > 10);
    assert_eq!(only(&dir), vec!["d.md", "d.png"]);
    let md = std::fs::read_to_string(sidecar_path(&png)).unwrap();
    assert!(md.contains("| k | D(1) |") && md.contains("| 6 |"), "{md}");
    assert!(md.contains("weight_ih_l0 and weight_hh_l0"), "{md}");
}

#[test]
fn the_trajectory_pictures_are_drawn_with_their_descriptions() {
    let dir = temp_dir("traj-fig");
    let s = TrajSettings {
        width: 8,
        layers: 2,
        sigma_w: vec![1.0, 3.0],
        activations: vec![Act::Tanh, Act::HardTanh],
        samples: 150,
        ..TrajSettings::default()
    };
    let rep = trajectory::run(&s, 1, &mut |_| {}).unwrap();
    let png = dir.join("len.png");
    trajectory_length_png(&rep, &png).unwrap();
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), LENGTH_SIZE);
    for m in OdeModel::ALL {
        assert!(count(&px, model_colour(m)) > 20, "{m}");
    }
    let md = std::fs::read_to_string(sidecar_path(&png)).unwrap();
    assert!(md.contains("| hard-tanh | 3 | ltc |"), "{md}");
    let pca = dir.join("pca.png");
    trajectory_pca_png(&rep, Act::Tanh, 1.0, &pca).unwrap();
    let (w, h, _) = decode(&pca);
    assert_eq!((w, h), (2 * 24 + 2 * 170 + 12, 2 * 24 + 3 * 170 + 2 * 12));
    assert!(trajectory_pca_png(&rep, Act::Relu, 1.0, &dir.join("none.png")).is_err());
    assert_eq!(only(&dir), vec!["len.md", "len.png", "pca.md", "pca.png"]);
}

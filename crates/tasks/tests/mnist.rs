//! The MNIST reader on the real files in ../shared/datasets/mnist.
use std::path::PathBuf;

use candle_core::{DType, Device};
use rand::SeedableRng;
use remanence_tasks::mnist::{load, MnistTask, MnistView, MNIST_FILES};
use remanence_tasks::SequenceTask;

fn mnist_dir() -> Option<PathBuf> {
    remanence_tasks::datasets::shared_for_tests("datasets/mnist")
}

#[test]
fn reads_the_original_files() {
    let Some(dir) = mnist_dir() else { return };
    let (train, test) = load(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.images.len(), 60_000 * 784);
    // Well-known first labels of each split.
    assert_eq!(&train.labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&test.labels[..5], &[7, 2, 1, 0, 4]);
    let mut counts = [0usize; 10];
    for &l in &train.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts[1], 6742, "ones in the training set");
}

#[test]
fn views_have_the_right_shapes_and_permutation_keeps_pixels() {
    let Some(dir) = mnist_dir() else { return };
    let rows = MnistTask::new(MnistView::Rows, &dir, 100, 50, 0).unwrap();
    let pix = MnistTask::new(MnistView::Pixels, &dir, 100, 50, 0).unwrap();
    let perm = MnistTask::new(MnistView::PermutedPixels, &dir, 100, 50, 0).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let b = rows
        .train_batches(8, &mut rng, DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(b.len(), 13);
    assert_eq!(b[0].x.dims(), &[8, 28, 28]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let p = pix
        .train_batches(8, &mut rng, DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(p[0].x.dims(), &[8, 784, 1]);
    assert_eq!(
        p[0].x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b[0].x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let q = perm
        .train_batches(8, &mut rng, DType::F32, &Device::Cpu)
        .unwrap();
    let mut a: Vec<f32> = p[0].x.flatten_all().unwrap().to_vec1().unwrap();
    let mut c: Vec<f32> = q[0].x.flatten_all().unwrap().to_vec1().unwrap();
    assert_ne!(a, c, "the permuted view reorders pixels");
    a.sort_by(f32::total_cmp);
    c.sort_by(f32::total_cmp);
    assert_eq!(a, c, "and keeps every pixel");
    assert_eq!(rows.input_size(), 28);
    assert_eq!(pix.input_size(), 1);
}

#[test]
fn missing_and_corrupt_files_are_named() {
    let Some(dir) = mnist_dir() else { return };
    let tmp = std::env::temp_dir().join(format!("remanence-mnist-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let err = load(&tmp).unwrap_err().to_string();
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains(tmp.to_str().unwrap()),
        "{err}"
    );
    for (f, _) in MNIST_FILES {
        std::fs::copy(dir.join(f), tmp.join(f)).unwrap();
    }
    let lp = tmp.join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&lp).unwrap();
    std::fs::write(&lp, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&tmp).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("corrupt gzip"),
        "{err}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

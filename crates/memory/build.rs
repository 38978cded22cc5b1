//! Builds the CUDA kernel sources of `src/kernels/` (as crates/cells/build.rs does for the cells):
//! - always, for the host under `host_emulation.h` (grid and block indices become loops), so the
//!   tests check the GPU code's retrieval against `GbNetwork::recall` on any machine;
//! - with the `cuda` feature, to PTX with nvcc (`NVCC`, else `CUDA_HOME/bin/nvcc`, else `nvcc` on
//!   PATH), for compute capability `CUDA_COMPUTE_CAP` (default 80: portable PTX), embedded in the
//!   crate for Candle's CUDA device to load (`src/cuda.rs`).
use std::path::PathBuf;
use std::process::Command;

/// Where the `.cu` sources live.
const DIR: &str = "src/kernels";
const KERNELS: [&str; 1] = ["gb"];

fn main() {
    println!("cargo:rerun-if-changed={DIR}");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(DIR)
        .file(format!("{DIR}/host_emulation.cpp"))
        .opt_level(2)
        .compile("remanence_memory_kernels_host");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx();
    }
}

fn ptx() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let nvcc = std::env::var("NVCC").ok().unwrap_or_else(|| {
        std::env::var("CUDA_HOME")
            .map(|h| format!("{h}/bin/nvcc"))
            .unwrap_or_else(|_| "nvcc".into())
    });
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    for k in KERNELS {
        let dst = out.join(format!("{k}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", &format!("-arch=sm_{cap}"), "-O3", "-std=c++17"])
            .arg(format!("-I{DIR}"))
            .arg("-o")
            .arg(&dst)
            .arg(format!("{DIR}/{k}.cu"))
            .status()
            .unwrap_or_else(|e| {
                panic!("running {nvcc} (set NVCC or CUDA_HOME; scripts/cuda_toolchain.sh installs one): {e}")
            });
        assert!(status.success(), "nvcc failed on {DIR}/{k}.cu");
    }
}

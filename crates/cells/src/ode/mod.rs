//! ODE solvers for the continuous-time cells (CT-RNN, ODE-RNN): fixed-step Euler, Heun and RK4,
//! and adaptive Dormand–Prince 5(4), over batched states with a time span per sample.
mod solvers;

pub use solvers::{integrate, Solver};

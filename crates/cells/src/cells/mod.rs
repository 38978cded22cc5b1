//! The cells, one file each. Every cell is a [`RecurrentCell`](crate::RecurrentCell) whose `step`
//! is the plain *reference* composition of Candle ops, differentiated by Candle's autograd; the
//! ones with fast paths ([`crate::kernels`]) run them from `forward_sequence` when
//! [`Route::select`](crate::Route::select) picks one.
//!
//! - [`srn`], [`lstm`], [`gru`]: PyTorch's `nn.RNN`, `nn.LSTM`, `nn.GRU` (names, gate order,
//!   initialisation); what they share sits in `torch_layer`.
//! - [`ltc`], [`cfc`]: ncps's liquid time-constant and closed-form continuous-time cells.
//! - [`ctrnn`], [`odernn`]: the CT-RNN and ODE-RNN, integrated by [`crate::ode`].
//! - [`esn`]: the echo-state reservoir (fixed random weights; a read-out fitted in closed form).
pub mod cfc;
pub mod ctrnn;
pub mod esn;
pub mod gru;
pub mod lstm;
pub mod ltc;
pub mod odernn;
pub mod srn;
pub(crate) mod torch_layer;

pub use cfc::Cfc;
pub use ctrnn::CtRnn;
pub use esn::Esn;
pub use gru::Gru;
pub use lstm::Lstm;
pub use ltc::Ltc;
pub use odernn::OdeRnn;
pub use srn::Srn;

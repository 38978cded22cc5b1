//! Audio: WAV decoding and resampling (`wav`), log-mel and MFCC features matching librosa
//! (`features`).
pub mod features;
pub mod wav;

pub use features::{FeatureConfig, FeatureKind};
pub use wav::Audio;

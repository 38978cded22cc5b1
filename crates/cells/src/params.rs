//! A parameter store behind Candle's `VarBuilder`.
//!
//! Constructors take a `VarBuilder` (as in candle-nn) and ask for each parameter with an
//! initialisation hint. In *seeded* mode the store creates missing parameters from the hint with a
//! ChaCha8 stream, so the same seed gives the same weights on every machine. In *loaded* mode
//! every requested parameter must already be present with the requested shape, and
//! [`ParamStore::finish_loading`] reports any tensor the model did not ask for.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{CellError, Result};

struct Inner {
    vars: BTreeMap<String, Var>,
    requested: BTreeSet<String>,
    /// `Some` in seeded mode.
    rng: Option<ChaCha8Rng>,
    /// Where loaded tensors came from, for error messages.
    source: PathBuf,
}

/// Named trainable parameters (`Var`s), ordered by name.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
}

impl ParamStore {
    /// A store that creates parameters from their initialisation hints with a seeded generator.
    pub fn seeded(seed: u64) -> Self {
        Self::new(
            BTreeMap::new(),
            Some(ChaCha8Rng::seed_from_u64(seed)),
            PathBuf::new(),
        )
    }

    /// A store holding the given tensors (for example read from a checkpoint at `source`).
    pub fn from_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        source: impl AsRef<Path>,
    ) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (name, t) in tensors {
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self::new(vars, None, source.as_ref().to_path_buf()))
    }

    fn new(vars: BTreeMap<String, Var>, rng: Option<ChaCha8Rng>, source: PathBuf) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                vars,
                requested: BTreeSet::new(),
                rng,
                source,
            })),
        }
    }

    /// A `VarBuilder` over this store.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// After building a model from loaded tensors: fails if the file held tensors the model does
    /// not use.
    pub fn finish_loading(&self) -> Result<()> {
        let inner = self.inner.lock().unwrap();
        let extra: Vec<String> = inner
            .vars
            .keys()
            .filter(|k| !inner.requested.contains(*k))
            .cloned()
            .collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(CellError::Unexpected {
                path: inner.source.clone(),
                names: extra,
            })
        }
    }

    /// All parameters, ordered by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let inner = self.inner.lock().unwrap();
        inner
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The current values, ordered by name (detached from the graph).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().detach()))
            .collect()
    }

    /// Adds `tensor` under `name` unless a tensor of that name exists.
    pub fn insert_if_absent(&self, name: &str, tensor: Tensor) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        if !inner.vars.contains_key(name) {
            inner
                .vars
                .insert(name.to_string(), Var::from_tensor(&tensor)?);
        }
        Ok(())
    }

    /// Clamps the named parameters to ≥ 0 in place.
    pub fn clamp_nonnegative(&self, names: &[String]) -> Result<()> {
        let inner = self.inner.lock().unwrap();
        for n in names {
            if let Some(v) = inner.vars.get(n) {
                let clamped = v.as_tensor().detach().relu()?;
                v.set(&clamped)?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the seeded generator (the stream that initialises every parameter), for
    /// initialisations no `Init` hint expresses (the reservoir's scaled sparse matrices).
    /// `None` for a store of loaded tensors.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> Option<T> {
        let mut inner = self.inner.lock().unwrap();
        inner.rng.as_mut().map(f)
    }

    pub fn get(&self, name: &str) -> Option<Var> {
        self.inner.lock().unwrap().vars.get(name).cloned()
    }

    /// Total number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

fn sample(init: Init, shape: &Shape, rng: &mut ChaCha8Rng) -> candle_core::Result<Vec<f64>> {
    let n = shape.elem_count();
    let uniform = |lo: f64, up: f64, rng: &mut ChaCha8Rng| -> Vec<f64> {
        (0..n)
            .map(|_| lo + (up - lo) * rng.random::<f64>())
            .collect()
    };
    let normal = |mean: f64, std: f64, rng: &mut ChaCha8Rng| -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Box–Muller; 1 - u keeps the logarithm finite.
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    };
    Ok(match init {
        Init::Const(v) => vec![v; n],
        Init::Uniform { lo, up } => uniform(lo, up, rng),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape) as f64;
            let std = non_linearity.gain() / fan.sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    uniform(-b, b, rng)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(0.0, std, rng),
            }
        }
    })
}

impl SimpleBackend for ParamStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut inner = self.inner.lock().unwrap();
        inner.requested.insert(name.to_string());
        if let Some(v) = inner.vars.get(name) {
            if v.shape() != &s {
                return Err(candle_core::Error::Msg(
                    CellError::ShapeMismatch {
                        path: inner.source.clone(),
                        name: name.into(),
                        expected: s.dims().to_vec(),
                        found: v.dims().to_vec(),
                    }
                    .to_string(),
                ));
            }
            let v = v.clone();
            if v.dtype() != dtype || !v.device().same_device(dev) {
                // Keep the store's Var in the model's dtype and device so gradients reach it.
                let t = v.as_tensor().to_dtype(dtype)?.to_device(dev)?;
                let nv = Var::from_tensor(&t)?;
                inner.vars.insert(name.to_string(), nv.clone());
                return Ok(nv.as_tensor().clone());
            }
            return Ok(v.as_tensor().clone());
        }
        let source = inner.source.clone();
        let Some(rng) = inner.rng.as_mut() else {
            return Err(candle_core::Error::Msg(
                CellError::Missing {
                    path: source,
                    names: vec![name.to_string()],
                }
                .to_string(),
            ));
        };
        let values = sample(h, &s, rng)?;
        let t = Tensor::from_vec(values, s, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let v = Var::from_tensor(&t)?;
        inner.vars.insert(name.to_string(), v.clone());
        Ok(v.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut inner = self.inner.lock().unwrap();
        inner.requested.insert(name.to_string());
        match inner.vars.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => Err(candle_core::Error::Msg(format!(
                "missing parameter `{name}`"
            ))),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.lock().unwrap().vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_bounds_respected() {
        let mk = |seed| {
            let store = ParamStore::seeded(seed);
            let vb = store.var_builder(DType::F64, &Device::Cpu);
            vb.get_with_hints((3, 4), "w", Init::Uniform { lo: -0.5, up: 0.5 })
                .unwrap()
        };
        let a: Vec<f64> = mk(7).flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = mk(7).flatten_all().unwrap().to_vec1().unwrap();
        let c: Vec<f64> = mk(8).flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
    }

    #[test]
    fn loaded_store_reports_missing_wrong_shape_and_extra() {
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let store = ParamStore::from_tensors(
            [("a".to_string(), t.clone()), ("b".to_string(), t)],
            "ckpt.safetensors",
        )
        .unwrap();
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let err = vb.get((2, 3), "a").unwrap_err().to_string();
        assert!(
            err.contains("ckpt.safetensors") && err.contains("[2, 3]"),
            "{err}"
        );
        let err = vb.get((2, 2), "zz").unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("zz"), "{err}");
        let err = store.finish_loading().unwrap_err().to_string();
        assert!(err.contains("\"b\""), "{err}");
    }
}

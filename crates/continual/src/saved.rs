//! What a method keeps between experiences, on disk: after each experience its tensors (EWC's
//! Fisher and anchor, SI's importances and anchor, the dual network's NET2) and the rest (the
//! memory's items, the dual network's data range and seed buffer, assoc-memory's quantiser and
//! bit matrix) are written into the
//! experience's folder, so that a stopped scenario resumes where it stopped
//! ([`MethodState::save`], [`MethodState::load`]). Floating-point numbers are stored as their
//! bits: JSON readers round some decimals to a neighbouring value.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use remanence_cells::{io, ParamStore, SequenceModel};
use remanence_train::RunConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::regularizers::{frozen_copy, Named};
use crate::replay::ReplayBuffer;
use crate::reverberation::InputRange;
use crate::scenario::{Experience, Item};
use crate::strategy::{Method, MethodState};

/// The file, in an experience's folder, that holds a method's tensors after the experience
/// (safetensors): `ewc.fisher.<param>`, `ewc.anchor.<param>`, `si.omega.<param>`,
/// `si.anchor.<param>`, and `net2.<param>` (the dual network's NET2).
pub const STATE_TENSORS: &str = "method-state.safetensors";
/// The file, in an experience's folder, that holds the rest of a method's state after the
/// experience ([`SavedState`], JSON).
pub const STATE_JSON: &str = "method-state.json";

/// One buffered sequence as `method-state.json` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedItem {
    /// Its class; `None` for a sequence without a label.
    pub class: Option<usize>,
    /// Index into the base task's training split.
    pub index: usize,
    /// Input permutation of the scenario it is read through; `None`: none.
    pub permutation: Option<usize>,
}

impl SavedItem {
    fn from_buffer(b: &ReplayBuffer) -> Vec<Self> {
        b.items()
            .iter()
            .map(|(class, i)| SavedItem {
                class: *class,
                index: i.index,
                permutation: i.permutation,
            })
            .collect()
    }

    fn to_buffer(items: &[Self]) -> Vec<(Option<usize>, Item)> {
        items
            .iter()
            .map(|s| {
                (
                    s.class,
                    Item {
                        index: s.index,
                        permutation: s.permutation,
                    },
                )
            })
            .collect()
    }
}

/// The dual network's state beside NET2's weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedDual {
    /// Whether NET2 has learned anything yet.
    pub trained: bool,
    /// The data's per-feature range ([`InputRange`]), every floating-point number written as
    /// the hexadecimal bits of its f64 (`"f64:3ff0000000000000"` for 1.0), so it reads back
    /// exactly.
    pub range: serde_json::Value,
    /// The reverberation seeds' buffer (`None`: noise seeds only).
    pub seeds: Option<Vec<SavedItem>>,
}

/// What `method-state.json` records after an experience: everything a method keeps that is not
/// a tensor (the tensors are in [`STATE_TENSORS`]; LwF's teacher is the model the experience
/// ended with, saved as the experience's `model.safetensors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState {
    /// Experiences learned when the state was saved (k + 1 after experience k).
    pub experiences: usize,
    pub method: Method,
    /// replay, agem: the memory's sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<Vec<SavedItem>>,
    /// dual-net: NET2's companions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual: Option<SavedDual>,
    /// assoc-memory: the quantiser (floats as bits) and the memory's bit matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assoc: Option<crate::assoc::SavedAssoc>,
}

/// `value` with every floating-point number replaced by the string `f64:<16 hex digits>` of its
/// bits (JSON readers round some decimals to a neighbouring f64).
fn floats_to_bits(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            Value::String(format!("f64:{:016x}", n.as_f64().unwrap_or(0.0).to_bits()))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(floats_to_bits).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, floats_to_bits(v))).collect())
        }
        v => v,
    }
}

/// The inverse of [`floats_to_bits`]; fails on bits that are no finite number.
fn floats_from_bits(value: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) if s.starts_with("f64:") => {
            let bits = u64::from_str_radix(&s[4..], 16).map_err(|e| format!("`{s}`: {e}"))?;
            let n = serde_json::Number::from_f64(f64::from_bits(bits))
                .ok_or_else(|| format!("`{s}` is not a finite number"))?;
            Value::Number(n)
        }
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(floats_from_bits)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| Ok((k, floats_from_bits(v)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
        v => v,
    })
}

fn file_err(path: &Path, msg: impl Into<String>) -> ContinualError {
    ContinualError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Takes every tensor `prefix<param>` out of `tensors`, each of which must name a parameter of
/// `params` and have its shape; `path` names the file in errors.
fn take_named(
    tensors: &mut HashMap<String, Tensor>,
    prefix: &str,
    params: &[(String, candle_core::Var)],
    path: &Path,
) -> Result<Named> {
    let keys: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    let mut out = Named::new();
    for key in keys {
        let t = tensors.remove(&key).expect("listed above");
        let name = &key[prefix.len()..];
        let Some((_, v)) = params.iter().find(|(n, _)| n == name) else {
            return Err(file_err(
                path,
                format!("tensor `{key}` belongs to no parameter of the model"),
            ));
        };
        if t.dims() != v.dims() {
            return Err(file_err(
                path,
                format!(
                    "tensor `{key}` has shape {:?}, and the parameter {:?}",
                    t.dims(),
                    v.dims()
                ),
            ));
        }
        out.insert(name.to_string(), t);
    }
    if out.is_empty() && !params.is_empty() {
        return Err(file_err(path, format!("has no tensor `{prefix}…`")));
    }
    Ok(out)
}

impl MethodState {
    /// Writes the state after `experiences` experiences into the folder `dir` (an experience's
    /// folder): [`STATE_TENSORS`], then [`STATE_JSON`], each through a temporary file and a
    /// rename. Call it between experiences (SI's running path integral is empty then).
    pub fn save(&self, experiences: usize, dir: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut add = |prefix: &str, named: &Named| {
            for (name, t) in named {
                tensors.push((format!("{prefix}{name}"), t.clone()));
            }
        };
        if let Some(e) = &self.ewc {
            add("ewc.fisher.", &e.fisher);
            add("ewc.anchor.", &e.anchor);
        }
        if let Some(si) = &self.si {
            let si = si.lock().expect("si state");
            add("si.omega.", &si.omega);
            add("si.anchor.", &si.anchor);
        }
        if let Some(d) = &self.dual {
            for (name, t) in d.net2_store.tensors() {
                tensors.push((format!("net2.{name}"), t));
            }
        }
        io::write(&dir.join(STATE_TENSORS), &tensors, None)?;
        let dual = match &self.dual {
            Some(d) => Some(SavedDual {
                trained: d.trained,
                range: floats_to_bits(serde_json::to_value(&d.range).map_err(|e| {
                    file_err(
                        &dir.join(STATE_JSON),
                        format!("cannot record the range: {e}"),
                    )
                })?),
                seeds: d
                    .buffer
                    .as_ref()
                    .map(|b| SavedItem::from_buffer(&b.lock().expect("seed buffer"))),
            }),
            None => None,
        };
        let assoc = match &self.assoc {
            Some(a) => {
                let mut m = a.saved().map_err(|e| {
                    file_err(
                        &dir.join(STATE_JSON),
                        format!("cannot record the memory: {e}"),
                    )
                })?;
                m.quantizer = m.quantizer.map(floats_to_bits);
                Some(m)
            }
            None => None,
        };
        let saved = SavedState {
            assoc,
            experiences,
            method: self.method,
            buffer: self
                .buffer
                .as_ref()
                .map(|b| SavedItem::from_buffer(&b.lock().expect("replay buffer"))),
            dual,
        };
        let text = serde_json::to_string_pretty(&saved).expect("a method state serialises");
        let path = dir.join(STATE_JSON);
        io::write_atomic(&path, format!("{text}\n").as_bytes())?;
        Ok(())
    }

    /// The state of `method` after `experiences` experiences, read from the folder `dir` that
    /// [`MethodState::save`] wrote: `net1` is the store of the model those experiences ended
    /// with (LwF's teacher is a frozen copy of it, and EWC's and SI's tensors must match its
    /// parameters), `reader` any experience of the scenario (it reads the memory's sequences).
    /// Errors name the file that is missing, unreadable or does not fit.
    pub fn load(
        method: Method,
        cfg: &RunConfig,
        device: &Device,
        dir: &Path,
        experiences: usize,
        reader: &Experience,
        net1: &ParamStore,
    ) -> Result<Self> {
        let mut state = Self::new(method, cfg, device)?;
        let jp = dir.join(STATE_JSON);
        let text = std::fs::read_to_string(&jp).map_err(|e| {
            file_err(
                &jp,
                format!("cannot read the method's state after the last finished experience: {e}"),
            )
        })?;
        let saved: SavedState = serde_json::from_str(&text)
            .map_err(|e| file_err(&jp, format!("not a method state: {e}")))?;
        if saved.experiences != experiences {
            return Err(file_err(
                &jp,
                format!(
                    "holds the state after {} experiences, and the run has finished {experiences}",
                    saved.experiences
                ),
            ));
        }
        if saved.method != method {
            return Err(file_err(
                &jp,
                format!(
                    "holds the state of {:?}, and the run's method is {method:?}",
                    saved.method
                ),
            ));
        }
        let tp = dir.join(STATE_TENSORS);
        let dtype = cfg.dtype()?;
        let (tensors, _) = io::read(&tp, device)?;
        let mut tensors = io::cast_all(tensors, dtype)?;
        let params = net1.vars();
        if let Some(e) = &mut state.ewc {
            e.fisher = take_named(&mut tensors, "ewc.fisher.", &params, &tp)?;
            e.anchor = take_named(&mut tensors, "ewc.anchor.", &params, &tp)?;
        }
        if let Some(si) = &state.si {
            let mut si = si.lock().expect("si state");
            si.omega = take_named(&mut tensors, "si.omega.", &params, &tp)?;
            si.anchor = take_named(&mut tensors, "si.anchor.", &params, &tp)?;
        }
        if let Method::Lwf { .. } = method {
            let teacher = frozen_copy(&cfg.model, net1, dtype, device)?;
            state.teacher = Some(Arc::new(Mutex::new(teacher)));
        }
        let missing = |what: &str| file_err(&jp, format!("records no {what}"));
        if let Some(b) = &state.buffer {
            let items = saved.buffer.as_deref().ok_or_else(|| missing("memory"))?;
            b.lock()
                .expect("replay buffer")
                .restore(SavedItem::to_buffer(items), reader)
                .map_err(|e| file_err(&jp, e.to_string()))?;
        }
        if let Some(a) = &mut state.assoc {
            let sa = saved.assoc.clone().ok_or_else(|| missing("memory"))?;
            let quantizer = sa
                .quantizer
                .map(|q| {
                    let q = floats_from_bits(q)?;
                    serde_json::from_value(q).map_err(|e| e.to_string())
                })
                .transpose()
                .map_err(|e| file_err(&jp, format!("bad quantiser: {e}")))?;
            a.restore(quantizer, sa.edges, &sa.learnt)
                .map_err(|e| file_err(&jp, e.to_string()))?;
        }
        if let Some(d) = &mut state.dual {
            let sd = saved
                .dual
                .as_ref()
                .ok_or_else(|| missing("dual-network state"))?;
            let net2: Vec<(String, Tensor)> = d
                .net2_store
                .vars()
                .iter()
                .map(|(name, _)| {
                    let key = format!("net2.{name}");
                    tensors
                        .remove(&key)
                        .map(|t| (name.clone(), t))
                        .ok_or_else(|| file_err(&tp, format!("has no tensor `{key}`")))
                })
                .collect::<Result<_>>()?;
            let store = ParamStore::from_tensors(net2, &tp)?;
            let model = SequenceModel::from_store(&cfg.model, &store, dtype, device)?;
            d.net2 = Arc::new(Mutex::new(model));
            d.net2_store = store;
            let range = floats_from_bits(sd.range.clone())
                .map_err(|e| file_err(&jp, format!("bad data range: {e}")))?;
            d.range = serde_json::from_value::<InputRange>(range)
                .map_err(|e| file_err(&jp, format!("bad data range: {e}")))?;
            d.trained = sd.trained;
            match (&d.buffer, &sd.seeds) {
                (Some(b), Some(items)) => b
                    .lock()
                    .expect("seed buffer")
                    .restore(SavedItem::to_buffer(items), reader)
                    .map_err(|e| file_err(&jp, e.to_string()))?,
                (Some(_), None) => return Err(missing("reverberation seeds")),
                _ => {}
            }
        }
        Ok(state)
    }
}

//! Buffers of the fused kernels kept for the next call instead of being allocated zeroed.
//!
//! A training step allocates tens of megabytes of activations and gradient buffers that the
//! kernels overwrite completely. A fresh zeroed allocation costs a pass of stores over all of it
//! (the allocator keeps freed memory, so `calloc` has to clear it); a [`Scratch`] buffer instead
//! comes from a small process-wide pool of earlier buffers and goes back to it when dropped. Its
//! values are those an earlier user left: initialised floats, so nothing here is unsound, but a
//! caller must write every value before it reads it (or zero it itself).
use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use crate::kernels::math::KernelFloat;

/// Buffers the pool holds at most; the smallest goes first when it is full.
const MAX_POOLED: usize = 24;

/// Bytes the pool holds at most; a buffer that would pass this is freed instead.
const MAX_POOLED_BYTES: usize = 1 << 30;

/// Pooled buffers of every float type, each a `Vec<T>` in a box.
static POOL: Mutex<Vec<Box<dyn Any + Send>>> = Mutex::new(Vec::new());

fn capacity_of<T: KernelFloat>(b: &(dyn Any + Send)) -> Option<usize> {
    b.downcast_ref::<Vec<T>>().map(|v| v.capacity())
}

/// A buffer of `len` values with unspecified (earlier) contents.
pub struct Scratch<T: KernelFloat> {
    v: Vec<T>,
}

impl<T: KernelFloat> Scratch<T> {
    /// `len` values: the smallest pooled buffer that holds them, or a new one.
    pub fn new(len: usize) -> Self {
        let v = match take::<T>(len) {
            Some(mut v) => {
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    // Only the values never written before are filled.
                    v.resize(len, T::zero());
                }
                v
            }
            // A new buffer: zeroed by the allocator, as fast as it gets.
            None => vec![T::zero(); len],
        };
        Scratch { v }
    }

    /// `len` zeros (a pooled buffer, cleared).
    pub fn zeroed(len: usize) -> Self {
        let mut s = Self::new(len);
        s.v.fill(T::zero());
        s
    }
}

fn take<T: KernelFloat>(len: usize) -> Option<Vec<T>> {
    if len == 0 {
        return None;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let best = pool
        .iter()
        .enumerate()
        .filter_map(|(i, b)| capacity_of::<T>(&**b).map(|c| (i, c)))
        .filter(|&(_, c)| c >= len)
        .min_by_key(|&(_, c)| c)?
        .0;
    let b = pool.swap_remove(best);
    b.downcast::<Vec<T>>().ok().map(|v| *v)
}

/// The bytes of a pooled buffer.
fn bytes(b: &(dyn Any + Send)) -> usize {
    capacity_of::<f32>(b)
        .map(|c| c * 4)
        .or_else(|| capacity_of::<f64>(b).map(|c| c * 8))
        .unwrap_or(0)
}

impl<T: KernelFloat> Drop for Scratch<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        let own = v.capacity() * std::mem::size_of::<T>();
        if own == 0 {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.iter().map(|b| bytes(&**b)).sum::<usize>() + own > MAX_POOLED_BYTES {
            return;
        }
        if pool.len() >= MAX_POOLED {
            let size = |b: &Box<dyn Any + Send>| bytes(&**b);
            let (i, smallest) = pool
                .iter()
                .enumerate()
                .map(|(i, b)| (i, size(b)))
                .min_by_key(|&(_, s)| s)
                .expect("a full pool");
            if smallest >= own {
                return;
            }
            pool.swap_remove(i);
        }
        pool.push(Box::new(v));
    }
}

impl<T: KernelFloat> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v
    }
}

impl<T: KernelFloat> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v
    }
}

impl<T: KernelFloat> std::fmt::Debug for Scratch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scratch({} values)", self.v.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_buffers_have_their_length_and_come_back() {
        let mut a = Scratch::<f32>::new(1000);
        assert_eq!(a.len(), 1000);
        a.fill(3.0);
        drop(a);
        // A smaller request may get the same buffer back: its values are whatever was left.
        let b = Scratch::<f32>::new(10);
        assert_eq!(b.len(), 10);
        let z = Scratch::<f64>::zeroed(2000);
        assert!(z.iter().all(|&v| v == 0.0));
        assert_eq!(Scratch::<f64>::new(0).len(), 0);
    }
}

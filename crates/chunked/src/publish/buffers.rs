//! Chunk buffers recycled between chunks, so a publish holds at most about
//! `concurrency` buffers whatever the image size, without a page fault per fresh buffer.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// A pool of equally sized byte buffers.
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    size: usize,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            size,
        })
    }

    /// A buffer of `len` (≤ the pool's size) bytes, reused when one is free.
    pub fn take(self: &Arc<Self>, len: usize) -> PooledBuffer {
        let buf = self
            .free
            .lock()
            .expect("buffer pool poisoned")
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size]);
        PooledBuffer {
            buf,
            len,
            pool: Arc::clone(self),
        }
    }
}

/// A buffer that goes back to its pool when dropped.
pub struct PooledBuffer {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    /// Shareable bytes that return the buffer to the pool when the last copy is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = self.pool.free.lock() {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_to_the_pool() {
        let pool = BufferPool::new(16);
        let mut a = pool.take(10);
        a.as_mut_slice().copy_from_slice(&[7; 10]);
        let ptr = a.as_ref().as_ptr();
        let bytes = a.into_bytes();
        assert_eq!(&bytes[..], &[7; 10]);
        let copy = bytes.clone();
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty());
        drop(copy);
        let b = pool.take(16);
        assert_eq!(b.as_ref().as_ptr(), ptr);
        assert_eq!(b.as_ref().len(), 16);
    }
}

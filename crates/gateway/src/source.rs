//! A [`ByteSource`] over an object in storage: every read is one ranged GET, so a conversion
//! never copies the uploaded image to local disk. Reads block on the runtime; they are made
//! from blocking threads, or from a worker of the (multi-threaded) runtime via `block_in_place`.

use aero_plugin_api::backend::opendal::Operator;
use aero_plugin_api::{ByteSource, Error, Result};
use tokio::runtime::Handle;

/// An object read through ranged storage reads.
pub struct ObjectSource {
    operator: Operator,
    key: String,
    len: u64,
    runtime: Handle,
}

impl ObjectSource {
    /// The object `key` of `len` bytes, read on `runtime`.
    pub fn new(operator: Operator, key: String, len: u64, runtime: Handle) -> Self {
        ObjectSource {
            operator,
            key,
            len,
            runtime,
        }
    }
}

impl ByteSource for ObjectSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.len)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{}: read of {} bytes at offset {offset} lies past the end of the object ({} bytes)",
                    self.key,
                    buf.len(),
                    self.len
                ))
            })?;
        if buf.is_empty() {
            return Ok(());
        }
        let read = || {
            self.runtime
                .block_on(async { self.operator.read_with(&self.key).range(offset..end).await })
        };
        // Plugins may be called from an async task of the publisher (block_status): let the
        // runtime move its other tasks off this worker while the read blocks.
        let data = if Handle::try_current().is_ok() {
            tokio::task::block_in_place(read)
        } else {
            read()
        }
        .map_err(|e| Error::io(format!("reading {} at {offset}: {e}", self.key)))?;
        if data.len() != buf.len() {
            return Err(Error::io(format!(
                "reading {} at {offset}: got {} bytes instead of {}",
                self.key,
                data.len(),
                buf.len()
            )));
        }
        let mut at = 0;
        for piece in data {
            buf[at..at + piece.len()].copy_from_slice(&piece);
            at += piece.len();
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.key
    }
}

//! The one checking filter around every opened disk, built-in or library: reads and queries
//! stay inside the disk, and block-status answers ascend and cover the asked range exactly.

use aero_plugin_api::{DiskInfo, Error, Extent, Result, VirtualDisk};
use std::sync::Arc;

/// A disk whose calls are checked before they reach the plugin and whose block-status
/// answers are checked before they reach the caller.
pub struct Checked {
    inner: Arc<dyn VirtualDisk>,
    plugin: String,
}

impl Checked {
    /// `disk`, opened by the plugin called `plugin`, behind the checks.
    pub fn wrap(disk: Arc<dyn VirtualDisk>, plugin: &str) -> Arc<dyn VirtualDisk> {
        Arc::new(Checked {
            inner: disk,
            plugin: plugin.to_string(),
        })
    }

    fn check_range(&self, offset: u64, length: u64) -> Result<()> {
        let capacity = self.inner.capacity();
        match offset.checked_add(length) {
            Some(end) if end <= capacity => Ok(()),
            _ => Err(Error::out_of_bounds(offset, length, capacity)),
        }
    }

    /// Checks that `extents` cover `[offset, offset + length)` exactly, in order.
    fn check_cover(&self, offset: u64, length: u64, extents: &[Extent]) -> Result<()> {
        let end = offset + length;
        let invalid = |problem: String| {
            Error::corrupt(format!(
                "format plugin '{}' returned invalid block status for [{offset}, {end}): {problem}",
                self.plugin
            ))
        };
        let mut next = offset;
        for extent in extents {
            if extent.offset != next || extent.length == 0 {
                return Err(invalid(format!(
                    "extent at {} of {} bytes where one at {next} was expected",
                    extent.offset, extent.length
                )));
            }
            next = next
                .checked_add(extent.length)
                .filter(|e| *e <= end)
                .ok_or_else(|| invalid("extents run past the range".to_string()))?;
        }
        if next != end {
            return Err(invalid(format!("extents end at {next}")));
        }
        Ok(())
    }
}

impl VirtualDisk for Checked {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.inner.read_at(offset, buf)
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.check_range(offset, length)?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let extents = self.inner.block_status(offset, length)?;
        self.check_cover(offset, length, &extents)?;
        Ok(extents)
    }

    fn info(&self) -> DiskInfo {
        self.inner.info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::{ErrorKind, ExtentKind};

    /// A 100-byte disk answering block status with the extents it was given.
    struct Fixed(Vec<Extent>);

    impl VirtualDisk for Fixed {
        fn capacity(&self) -> u64 {
            100
        }
        fn read_at(&self, _: u64, buf: &mut [u8]) -> Result<()> {
            buf.fill(7);
            Ok(())
        }
        fn block_status(&self, _: u64, _: u64) -> Result<Vec<Extent>> {
            Ok(self.0.clone())
        }
        fn info(&self) -> DiskInfo {
            DiskInfo::new(Some(10))
        }
    }

    fn disk(extents: &[(u64, u64)]) -> Arc<dyn VirtualDisk> {
        let extents = extents
            .iter()
            .map(|&(o, l)| Extent::new(o, l, ExtentKind::Data))
            .collect();
        Checked::wrap(Arc::new(Fixed(extents)), "fixed")
    }

    #[test]
    fn refuses_ranges_outside_the_disk() {
        let d = disk(&[(0, 100)]);
        let mut buf = [0u8; 4];
        d.read_at(96, &mut buf).unwrap();
        d.read_at(100, &mut []).unwrap();
        assert_eq!(
            d.read_at(97, &mut buf).unwrap_err().kind(),
            ErrorKind::OutOfBounds
        );
        assert_eq!(
            d.read_at(u64::MAX, &mut buf).unwrap_err().kind(),
            ErrorKind::OutOfBounds
        );
        assert_eq!(
            d.block_status(50, 51).unwrap_err().kind(),
            ErrorKind::OutOfBounds
        );
        assert!(d.block_status(100, 0).unwrap().is_empty());
        assert_eq!(d.info().cluster_size, Some(10));
    }

    #[test]
    fn refuses_extents_that_do_not_cover_the_range_in_order() {
        assert_eq!(
            disk(&[(0, 40), (40, 60)])
                .block_status(0, 100)
                .unwrap()
                .len(),
            2
        );
        for (extents, problem) in [
            (&[(0, 40), (50, 50)][..], "where one at 40 was expected"),
            (&[(0, 60), (40, 60)][..], "where one at 60 was expected"),
            (&[(0, 40), (40, 0)][..], "of 0 bytes"),
            (&[(0, 40)][..], "extents end at 40"),
            (&[(0, 40), (40, 70)][..], "run past the range"),
        ] {
            let error = disk(extents).block_status(0, 100).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Corrupt);
            assert!(error.message().contains(problem), "{error}");
            assert!(error.message().contains("format plugin 'fixed'"), "{error}");
        }
    }
}

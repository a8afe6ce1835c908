//! Collecting the answer to a block-status query.

use crate::{Error, Extent, ExtentKind, Result};

/// Builds the extents answering `block_status(offset, length)`: runs are pushed in ascending
/// order, clipped to the asked range, and adjacent runs of the same kind are merged.
///
/// ```
/// use aero_plugin_api::{ExtentCollector, ExtentKind};
/// let mut extents = ExtentCollector::new(100, 50);
/// extents.push(0, 120, ExtentKind::Data)?; // clipped to [100, 120)
/// extents.push(120, 10, ExtentKind::Data)?; // merged
/// extents.push(130, 4096, ExtentKind::Zero)?; // clipped to [130, 150)
/// let extents = extents.finish()?;
/// assert_eq!(extents.len(), 2);
/// assert_eq!((extents[0].offset, extents[0].length), (100, 30));
/// # Ok::<(), aero_plugin_api::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExtentCollector {
    start: u64,
    end: u64,
    next: u64,
    extents: Vec<Extent>,
}

impl ExtentCollector {
    /// A collector for the range `[offset, offset + length)`.
    pub fn new(offset: u64, length: u64) -> Self {
        ExtentCollector {
            start: offset,
            end: offset.saturating_add(length),
            next: offset,
            extents: Vec::new(),
        }
    }

    /// The first byte not yet covered.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Whether the whole range is covered.
    pub fn is_full(&self) -> bool {
        self.next >= self.end
    }

    /// Adds the run `[offset, offset + length)` of `kind`, clipped to the range. The clipped
    /// run must start where the previous one ended; empty runs are ignored.
    pub fn push(&mut self, offset: u64, length: u64, kind: ExtentKind) -> Result<()> {
        let from = offset.max(self.start);
        let to = offset.saturating_add(length).min(self.end);
        if from >= to {
            return Ok(());
        }
        if from != self.next {
            return Err(Error::corrupt(format!(
                "block status of [{}, {}): a run at {from} where one at {} was expected",
                self.start, self.end, self.next
            )));
        }
        self.next = to;
        match self.extents.last_mut() {
            Some(last) if last.kind == kind => last.length += to - from,
            _ => self.extents.push(Extent::new(from, to - from, kind)),
        }
        Ok(())
    }

    /// The extents, once they cover the whole range.
    pub fn finish(self) -> Result<Vec<Extent>> {
        if self.next != self.end {
            return Err(Error::corrupt(format!(
                "block status of [{}, {}): runs end at {}",
                self.start, self.end, self.next
            )));
        }
        Ok(self.extents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExtentKind::{Data, Zero};

    fn spans(extents: &[Extent]) -> Vec<(u64, u64, ExtentKind)> {
        extents
            .iter()
            .map(|e| (e.offset, e.length, e.kind))
            .collect()
    }

    #[test]
    fn clips_merges_and_checks_order() {
        let mut c = ExtentCollector::new(10, 30);
        c.push(0, 5, Data).unwrap(); // before the range: ignored
        c.push(0, 15, Data).unwrap();
        c.push(15, 0, Zero).unwrap();
        c.push(15, 5, Data).unwrap();
        assert_eq!(c.position(), 20);
        c.push(20, 5, Zero).unwrap();
        c.push(25, 100, Zero).unwrap();
        assert!(c.is_full());
        assert_eq!(
            spans(&c.finish().unwrap()),
            [(10, 10, Data), (20, 20, Zero)]
        );

        let mut c = ExtentCollector::new(0, 10);
        c.push(0, 4, Data).unwrap();
        assert!(c.push(2, 4, Zero).is_err(), "overlap");
        assert!(c.push(5, 4, Zero).is_err(), "gap");
        assert!(c.finish().is_err(), "short");
        assert!(ExtentCollector::new(7, 0).finish().unwrap().is_empty());
    }
}

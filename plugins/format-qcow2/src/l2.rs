//! L2 tables: decoding entries into (sub)cluster kinds, and a bounded cache of loaded tables.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Host cluster offset bits of L1 and standard L2 entries.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry: the cluster is compressed.
const COMPRESSED: u64 = 1 << 62;
/// Standard L2 entry (without subclusters): the cluster reads as zeros.
const ZERO: u64 = 1;
/// Descriptor bits of an L2 entry (everything but the copied and compressed flags).
const DESCRIPTOR_MASK: u64 = (1 << 62) - 1;

/// What one cluster, or one subcluster with extended L2 entries, holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Data at this host cluster offset (cluster-aligned, non-zero).
    Data(u64),
    /// Reads as zeros.
    Zero,
    /// Not allocated here: reads from the backing file, or zeros without one.
    Unallocated,
    /// Compressed cluster with this descriptor (bits 0..=61 of the entry).
    Compressed(u64),
}

/// Why an L2 entry cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// The host offset is not aligned to a cluster.
    Unaligned(u64),
    /// A subcluster is marked both allocated and zero, or an unallocated cluster has
    /// allocated subclusters.
    InvalidBitmap(u64),
    /// The zero flag in a version 2 image.
    ZeroInV2,
}

/// A loaded L2 table: the raw big-endian words, two per entry with extended L2 entries.
pub type Table = Arc<[u64]>;

/// Decodes L2 entries for one image's layout.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    /// Cluster size minus one.
    pub cluster_mask: u64,
    /// 128-bit entries with subcluster bitmaps.
    pub extended: bool,
    /// The image is version 2 (no zero flag).
    pub v2: bool,
}

impl Decoder {
    /// The kind of subcluster `sub` (0..32; always 0 without extended entries) of the cluster
    /// whose entry is `entry` with subcluster bitmap `bitmap`.
    pub fn unit(&self, entry: u64, bitmap: u64, sub: u32) -> Result<Unit, EntryError> {
        if entry & COMPRESSED != 0 {
            return Ok(Unit::Compressed(entry & DESCRIPTOR_MASK));
        }
        let host = entry & OFFSET_MASK;
        if self.extended {
            let alloc = bitmap & 0xffff_ffff;
            let zero = bitmap >> 32;
            if host == 0 && alloc != 0 || host != 0 && alloc & zero != 0 {
                return Err(EntryError::InvalidBitmap(bitmap));
            }
            if zero & (1 << sub) != 0 {
                return Ok(Unit::Zero);
            }
            if alloc & (1 << sub) == 0 {
                return Ok(Unit::Unallocated);
            }
        } else if entry & ZERO != 0 {
            if self.v2 {
                return Err(EntryError::ZeroInV2);
            }
            if host & self.cluster_mask != 0 {
                return Err(EntryError::Unaligned(host));
            }
            return Ok(Unit::Zero);
        } else if host == 0 {
            return Ok(Unit::Unallocated);
        }
        if host & self.cluster_mask != 0 {
            return Err(EntryError::Unaligned(host));
        }
        Ok(Unit::Data(host))
    }
}

/// A small least-recently-used cache of L2 tables keyed by their file offset.
pub struct Cache {
    inner: Mutex<CacheState>,
    capacity: usize,
}

struct CacheState {
    tables: HashMap<u64, (Table, u64)>,
    clock: u64,
}

impl Cache {
    /// A cache holding at most `capacity` tables (at least one).
    pub fn new(capacity: usize) -> Self {
        Cache {
            inner: Mutex::new(CacheState {
                tables: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The table at `offset`, loading it with `load` on a miss (outside the lock).
    pub fn get_or_load<E>(
        &self,
        offset: u64,
        load: impl FnOnce() -> Result<Table, E>,
    ) -> Result<Table, E> {
        if let Some(table) = self.lock().touch(offset) {
            return Ok(table);
        }
        let table = load()?;
        let mut state = self.lock();
        if state.tables.len() >= self.capacity && !state.tables.contains_key(&offset) {
            if let Some(oldest) = state
                .tables
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key)
            {
                state.tables.remove(&oldest);
            }
        }
        state.clock += 1;
        let clock = state.clock;
        state.tables.insert(offset, (Arc::clone(&table), clock));
        Ok(table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A panic while holding the lock cannot leave the map inconsistent, so ignore poison.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CacheState {
    fn touch(&mut self, offset: u64) -> Option<Table> {
        self.clock += 1;
        let clock = self.clock;
        self.tables.get_mut(&offset).map(|(table, used)| {
            *used = clock;
            Arc::clone(table)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD: Decoder = Decoder {
        cluster_mask: 0xffff,
        extended: false,
        v2: false,
    };
    const EXT: Decoder = Decoder {
        cluster_mask: 0xffff,
        extended: true,
        v2: false,
    };

    #[test]
    fn standard_entries() {
        assert_eq!(STD.unit(0, 0, 0), Ok(Unit::Unallocated));
        assert_eq!(STD.unit(1, 0, 0), Ok(Unit::Zero));
        assert_eq!(STD.unit((1 << 63) | 0x30000 | 1, 0, 0), Ok(Unit::Zero));
        assert_eq!(STD.unit((1 << 63) | 0x30000, 0, 0), Ok(Unit::Data(0x30000)));
        assert_eq!(STD.unit(0x30200, 0, 0), Err(EntryError::Unaligned(0x30200)));
        assert_eq!(STD.unit(COMPRESSED | 5, 0, 0), Ok(Unit::Compressed(5)));
        let v2 = Decoder { v2: true, ..STD };
        assert_eq!(v2.unit(1, 0, 0), Err(EntryError::ZeroInV2));
    }

    #[test]
    fn extended_entries() {
        let bitmap = 0b01 | (0b10 << 32);
        assert_eq!(EXT.unit(0x30000, bitmap, 0), Ok(Unit::Data(0x30000)));
        assert_eq!(EXT.unit(0x30000, bitmap, 1), Ok(Unit::Zero));
        assert_eq!(EXT.unit(0x30000, bitmap, 2), Ok(Unit::Unallocated));
        assert_eq!(EXT.unit(0, 0b100 << 32, 2), Ok(Unit::Zero));
        assert!(EXT.unit(0, 1, 0).is_err());
        assert!(EXT.unit(0x30000, 1 | (1 << 32), 5).is_err());
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let cache = Cache::new(2);
        let load = |v: u64| move || Ok::<Table, ()>(Arc::from(vec![v]));
        cache.get_or_load(1, load(1)).unwrap();
        cache.get_or_load(2, load(2)).unwrap();
        cache.get_or_load(1, load(99)).unwrap();
        cache.get_or_load(3, load(3)).unwrap();
        assert_eq!(cache.get_or_load(1, load(99)).unwrap()[0], 1);
        assert_eq!(cache.get_or_load(2, load(22)).unwrap()[0], 22);
    }
}

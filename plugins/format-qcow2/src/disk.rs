//! The guest-visible disk of an open qcow2 image: address translation, reads and block status.

use crate::compressed::{CompressedExtent, Compression};
use crate::header::{self, Header};
use crate::l2::{self, Cache, Decoder, EntryError, Table, Unit};
use aero_plugin_api::{
    Backing, ByteSource, DiskInfo, Error, Extent, ExtentCollector, ExtentKind, OpenContext, Result,
    VirtualDisk,
};
use std::sync::{Arc, Mutex};

/// The active L1 table is read in pieces of this many bytes.
const L1_READ_BYTES: usize = 64 << 10;
/// Memory budget of the L2-table cache.
const L2_CACHE_BYTES: u64 = 16 << 20;
/// Bounds on the number of cached L2 tables.
const L2_CACHE_TABLES: (u64, u64) = (4, 1024);

/// How a run of guest bytes is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Contiguous host bytes starting at this file offset.
    Data(u64),
    /// Zeros.
    Zero,
    /// Not allocated in this image.
    Unallocated,
    /// Part of one compressed cluster with this descriptor.
    Compressed(u64),
}

/// An open qcow2 image.
pub struct Qcow2Disk {
    source: Arc<dyn ByteSource>,
    file_len: u64,
    capacity: u64,
    cluster_bits: u32,
    /// log2 of the bytes one L1 entry maps.
    l1_entry_bits: u32,
    /// log2 of the (sub)cluster size, the unit of allocation.
    unit_bits: u32,
    /// log2 of the subclusters per cluster (5 with extended L2 entries, else 0).
    sub_bits: u32,
    decoder: Decoder,
    compression: Compression,
    /// L2 table offsets, 0 where unallocated; validated at open.
    l1: Vec<u64>,
    l2_cache: Cache,
    /// The most recently decompressed cluster, keyed by its descriptor.
    last_compressed: Mutex<Option<(u64, Arc<[u8]>)>>,
    backing: Option<Backing>,
}

impl Qcow2Disk {
    /// Opens `source`, validating the header and the active L1 table, and its backing file.
    pub fn open(source: Arc<dyn ByteSource>, ctx: &OpenContext<'_>) -> Result<Self> {
        let header = header::read(source.as_ref())?;
        let disk = Self::with_header(source, &header)?;
        let backing = match &header.backing_file {
            Some(name) => Some(
                ctx.backing
                    .open_backing(name, header.backing_format.as_deref())?,
            ),
            None => None,
        };
        Ok(Qcow2Disk { backing, ..disk })
    }

    fn with_header(source: Arc<dyn ByteSource>, header: &Header) -> Result<Self> {
        let name = source.name().to_string();
        let file_len = source.len();
        let cluster_bits = header.cluster_bits;
        let cluster_size = header.cluster_size();
        let entry_bits = if header.extended_l2 { 4 } else { 3 };
        let l1_entry_bits = cluster_bits + (cluster_bits - entry_bits);
        let needed = header.size.div_ceil(1 << l1_entry_bits);
        if u64::from(header.l1_size) < needed {
            return Err(Error::corrupt(format!(
                "{name}: qcow2: L1 table has {} entries, too few for a disk of {} bytes (needs {needed})",
                header.l1_size, header.size
            )));
        }
        // header::read capped l1_size, so this is at most header::MAX_L1_BYTES.
        let l1_bytes = needed * 8;
        let offset = header.l1_table_offset;
        if needed > 0 && offset & (cluster_size - 1) != 0 {
            return Err(Error::corrupt(format!(
                "{name}: qcow2: L1 table offset {offset} is not aligned to the cluster size {cluster_size}"
            )));
        }
        if offset
            .checked_add(l1_bytes)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::corrupt(format!(
                "{name}: qcow2: L1 table at offset {offset} ({l1_bytes} bytes) lies past the end of the file ({file_len} bytes)"
            )));
        }
        let mut l1 = Vec::with_capacity(needed as usize);
        let mut raw = vec![0u8; (l1_bytes as usize).min(L1_READ_BYTES)];
        let mut pos = 0;
        while pos < l1_bytes {
            let piece = &mut raw[..(l1_bytes - pos).min(L1_READ_BYTES as u64) as usize];
            source.read_at(offset + pos, piece)?;
            for word in piece.chunks_exact(8) {
                let index = l1.len();
                let l2 = u64::from_be_bytes(word.try_into().expect("8 bytes")) & l2::OFFSET_MASK;
                if l2 & (cluster_size - 1) != 0 {
                    return Err(Error::corrupt(format!(
                        "{name}: qcow2: L1 entry {index}: L2 table offset {l2} is not aligned to the cluster size {cluster_size}"
                    )));
                }
                if l2 != 0 && l2 + cluster_size > file_len {
                    return Err(Error::corrupt(format!(
                        "{name}: qcow2: L1 entry {index}: L2 table at offset {l2} lies past the end of the file ({file_len} bytes)"
                    )));
                }
                l1.push(l2);
            }
            pos += piece.len() as u64;
        }

        let sub_bits = if header.extended_l2 { 5 } else { 0 };
        let tables = (L2_CACHE_BYTES / cluster_size).clamp(L2_CACHE_TABLES.0, L2_CACHE_TABLES.1);
        Ok(Qcow2Disk {
            source,
            file_len,
            capacity: header.size,
            cluster_bits,
            l1_entry_bits,
            unit_bits: cluster_bits - sub_bits,
            sub_bits,
            decoder: Decoder {
                cluster_mask: cluster_size - 1,
                extended: header.extended_l2,
                v2: header.version == 2,
            },
            compression: header.compression,
            l1,
            l2_cache: Cache::new(tables as usize),
            last_compressed: Mutex::new(None),
            backing: None,
        })
    }

    fn name(&self) -> &str {
        self.source.name()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(Error::out_of_bounds(offset, len, self.capacity)),
        }
    }

    /// The longest run from `offset` (at most `max_len` bytes, `max_len > 0`) stored one way.
    /// Data runs are contiguous in the file; compressed runs stay within one cluster.
    fn map(&self, offset: u64, max_len: u64) -> Result<(Run, u64)> {
        let limit = offset + max_len;
        let l1_index = (offset >> self.l1_entry_bits) as usize;
        let l2_offset = self.l1.get(l1_index).copied().unwrap_or(0);
        if l2_offset == 0 {
            // Extend over the following unallocated L1 entries up to `limit`.
            let mut end = ((l1_index as u64) + 1) << self.l1_entry_bits;
            while end < limit && self.l1.get((end >> self.l1_entry_bits) as usize) == Some(&0) {
                end += 1 << self.l1_entry_bits;
            }
            return Ok((Run::Unallocated, limit.min(end) - offset));
        }
        let table_end = ((l1_index as u64) + 1) << self.l1_entry_bits;
        let limit = limit.min(table_end);
        let table = self
            .l2_cache
            .get_or_load(l2_offset, || self.load_l2(l2_offset))?;

        let units_mask = (1u64 << (self.l1_entry_bits - self.unit_bits)) - 1;
        let unit_size = 1u64 << self.unit_bits;
        let mut unit = (offset >> self.unit_bits) & units_mask;
        let first = self.unit_at(&table, l2_offset, unit)?;
        let within = offset & (unit_size - 1);
        if let Unit::Compressed(descriptor) = first {
            let cluster_end = ((offset >> self.cluster_bits) + 1) << self.cluster_bits;
            return Ok((Run::Compressed(descriptor), limit.min(cluster_end) - offset));
        }
        let mut end = (offset | (unit_size - 1)) + 1;
        let mut expected = first;
        while end < limit {
            unit += 1;
            if let Unit::Data(host) = expected {
                expected = Unit::Data(host + unit_size);
            }
            if self.unit_at(&table, l2_offset, unit)? != expected {
                break;
            }
            end += unit_size;
        }
        let run = match first {
            Unit::Data(host) => Run::Data(host + within),
            Unit::Zero => Run::Zero,
            Unit::Unallocated => Run::Unallocated,
            Unit::Compressed(d) => Run::Compressed(d),
        };
        Ok((run, limit.min(end) - offset))
    }

    /// The kind of allocation unit `unit` of the L2 table at `l2_offset`; data units carry
    /// their own host offset.
    fn unit_at(&self, table: &Table, l2_offset: u64, unit: u64) -> Result<Unit> {
        let cluster = (unit >> self.sub_bits) as usize;
        let sub = (unit & ((1 << self.sub_bits) - 1)) as u32;
        let (entry, bitmap) = if self.decoder.extended {
            (table[2 * cluster], table[2 * cluster + 1])
        } else {
            (table[cluster], 0)
        };
        match self.decoder.unit(entry, bitmap, sub) {
            Ok(Unit::Data(host)) => Ok(Unit::Data(host + (u64::from(sub) << self.unit_bits))),
            Ok(other) => Ok(other),
            Err(problem) => {
                let what = match problem {
                    EntryError::Unaligned(host) => {
                        format!("host cluster offset {host} is not cluster-aligned")
                    }
                    EntryError::InvalidBitmap(bitmap) => {
                        format!("invalid subcluster bitmap {bitmap:#018x}")
                    }
                    EntryError::ZeroInV2 => "zero flag set in a version 2 image".to_string(),
                };
                Err(Error::corrupt(format!(
                    "{}: L2 table at offset {l2_offset}, entry {cluster}: {what}",
                    self.name()
                )))
            }
        }
    }

    fn load_l2(&self, offset: u64) -> Result<Table> {
        let mut raw = vec![0u8; 1 << self.cluster_bits];
        self.source.read_at(offset, &mut raw)?;
        Ok(raw
            .chunks_exact(8)
            .map(|w| u64::from_be_bytes(w.try_into().expect("8 bytes")))
            .collect())
    }

    /// Reads host bytes. A cluster may start inside the file and end past it (qemu reads the
    /// missing tail as zeros); a cluster starting past the end is an error.
    fn read_host(&self, host: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len() as u64;
        let cluster_size = 1u64 << self.cluster_bits;
        let clusters_end = self
            .file_len
            .checked_next_multiple_of(cluster_size)
            .unwrap_or(u64::MAX);
        if host.checked_add(len).is_none_or(|end| end > clusters_end) {
            return Err(Error::corrupt(format!(
                "{}: data cluster at offset {} lies past the end of the file ({} bytes)",
                self.name(),
                (host & !(cluster_size - 1)).max(clusters_end),
                self.file_len
            )));
        }
        let available = self.file_len.saturating_sub(host).min(len) as usize;
        let (present, missing) = out.split_at_mut(available);
        self.source.read_at(host, present)?;
        missing.fill(0);
        Ok(())
    }

    fn read_unallocated(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let from_backing = match &self.backing {
            Some(backing) => {
                let n = backing
                    .disk
                    .capacity()
                    .saturating_sub(offset)
                    .min(out.len() as u64) as usize;
                if n > 0 {
                    backing.disk.read_at(offset, &mut out[..n])?;
                }
                n
            }
            None => 0,
        };
        out[from_backing..].fill(0);
        Ok(())
    }

    fn read_compressed(&self, offset: u64, descriptor: u64, out: &mut [u8]) -> Result<()> {
        let cluster = self.decompress(descriptor)?;
        let start = (offset & ((1 << self.cluster_bits) - 1)) as usize;
        out.copy_from_slice(&cluster[start..start + out.len()]);
        Ok(())
    }

    fn decompress(&self, descriptor: u64) -> Result<Arc<[u8]>> {
        let lock = || {
            self.last_compressed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some((cached, data)) = lock().as_ref() {
            if *cached == descriptor {
                return Ok(Arc::clone(data));
            }
        }
        let extent = CompressedExtent::from_descriptor(descriptor, self.cluster_bits);
        if extent.offset >= self.file_len {
            return Err(Error::corrupt(format!(
                "{}: compressed cluster at offset {} lies past the end of the file ({} bytes)",
                self.name(),
                extent.offset,
                self.file_len
            )));
        }
        let mut input = vec![0u8; extent.length.min(self.file_len - extent.offset) as usize];
        self.source.read_at(extent.offset, &mut input)?;
        let mut data = vec![0u8; 1 << self.cluster_bits];
        self.compression
            .decompress(&input, &mut data)
            .map_err(|msg| {
                Error::corrupt(format!(
                    "{}: compressed cluster at offset {}: {msg}",
                    self.name(),
                    extent.offset
                ))
            })?;
        let data: Arc<[u8]> = data.into();
        *lock() = Some((descriptor, Arc::clone(&data)));
        Ok(data)
    }

    fn unallocated_status(&self, offset: u64, len: u64, out: &mut ExtentCollector) -> Result<()> {
        let from_backing = match &self.backing {
            Some(backing) => {
                let n = backing.disk.capacity().saturating_sub(offset).min(len);
                if n > 0 {
                    for extent in backing.disk.block_status(offset, n)? {
                        out.push(extent.offset, extent.length, extent.kind)?;
                    }
                }
                n
            }
            None => 0,
        };
        out.push(offset + from_backing, len - from_backing, ExtentKind::Zero)?;
        Ok(())
    }
}

impl VirtualDisk for Qcow2Disk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (run, len) = self.map(pos, (buf.len() - done) as u64)?;
            let out = &mut buf[done..done + len as usize];
            match run {
                Run::Data(host) => self.read_host(host, out)?,
                Run::Zero => out.fill(0),
                Run::Unallocated => self.read_unallocated(pos, out)?,
                Run::Compressed(descriptor) => self.read_compressed(pos, descriptor, out)?,
            }
            done += len as usize;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.check_range(offset, length)?;
        let mut out = ExtentCollector::new(offset, length);
        let end = offset + length;
        let mut pos = offset;
        while pos < end {
            let (run, len) = self.map(pos, end - pos)?;
            match run {
                Run::Data(_) | Run::Compressed(_) => out.push(pos, len, ExtentKind::Data)?,
                Run::Zero => out.push(pos, len, ExtentKind::Zero)?,
                Run::Unallocated => self.unallocated_status(pos, len, &mut out)?,
            }
            pos += len;
        }
        out.finish()
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::new(Some(1 << self.cluster_bits)).with_backing_chain(
            self.backing
                .as_ref()
                .map(Backing::chain)
                .unwrap_or_default(),
        )
    }
}

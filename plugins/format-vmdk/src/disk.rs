//! An open VMDK sparse extent: grain directory, grain tables and grains.

use crate::descriptor::Descriptor;
use crate::grain;
use crate::header::{Header, SECTOR};
use aero_plugin_api::{
    Backing, ByteSource, DiskInfo, Error, Extent, ExtentCollector, ExtentKind, OpenContext, Result,
    VirtualDisk,
};
use std::sync::Arc;

/// Where one grain's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Not in this file: zeros, or the parent's bytes.
    Unallocated,
    /// Zeros.
    Zero,
    /// Stored as-is at this byte offset.
    Plain(u64),
    /// Compressed at this byte offset.
    Compressed(u64),
}

/// A VMDK sparse extent as a virtual disk.
pub struct VmdkDisk {
    source: Arc<dyn ByteSource>,
    header: Header,
    /// Grain table offsets in sectors, 0 for absent tables.
    directory: Vec<u32>,
    parent: Option<Backing>,
}

impl VmdkDisk {
    /// Opens `source`, following a delta disk's parent through `ctx`.
    pub fn open(source: Arc<dyn ByteSource>, ctx: &OpenContext<'_>) -> Result<VmdkDisk> {
        let header = Header::read(source.as_ref())?;
        let descriptor = match header.descriptor {
            Some(at) => Descriptor::read(source.as_ref(), at)?,
            None => Descriptor::default(),
        };
        let directory = load_directory(source.as_ref(), &header)?;
        let parent = match &descriptor.parent {
            Some(parent) => Some(ctx.backing.open_backing(parent, Some("vmdk"))?),
            None => None,
        };
        Ok(VmdkDisk {
            source,
            header,
            directory,
            parent,
        })
    }

    fn name(&self) -> &str {
        self.source.name()
    }

    /// Grain table entries of grains `[first, first + count)`, all in one grain table.
    fn entries(&self, first: u64, count: u64) -> Result<Vec<u32>> {
        let per_table = self.header.gtes_per_gt;
        let table = self.directory[(first / per_table) as usize];
        if table == 0 {
            return Ok(vec![0; count as usize]);
        }
        let at = u64::from(table) * SECTOR + (first % per_table) * 4;
        let mut bytes = vec![0u8; count as usize * 4];
        self.source.read_at(at, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn classify(&self, entry: u32) -> Grain {
        match entry {
            0 => Grain::Unallocated,
            1 if self.header.zero_grains => Grain::Zero,
            sector if self.header.compressed => Grain::Compressed(u64::from(sector) * SECTOR),
            sector => Grain::Plain(u64::from(sector) * SECTOR),
        }
    }

    /// Calls `f(offset, length, grain index, grain)` for each grain's part of
    /// `[offset, offset + length)`, which lies within the disk.
    fn walk(
        &self,
        offset: u64,
        length: u64,
        mut f: impl FnMut(u64, u64, u64, Grain) -> Result<()>,
    ) -> Result<()> {
        let grain_bytes = self.header.grain_bytes;
        let per_table = self.header.gtes_per_gt;
        let end = offset + length;
        let mut pos = offset;
        while pos < end {
            let first = pos / grain_bytes;
            let last = (end - 1) / grain_bytes;
            let count = ((first / per_table + 1) * per_table).min(last + 1) - first;
            for (i, entry) in self.entries(first, count)?.into_iter().enumerate() {
                let index = first + i as u64;
                let grain_end = (index + 1) * grain_bytes;
                let piece_end = end.min(grain_end);
                f(pos, piece_end - pos, index, self.classify(entry))?;
                pos = piece_end;
            }
        }
        Ok(())
    }

    fn read_plain(&self, index: u64, at: u64, within: u64, buf: &mut [u8]) -> Result<()> {
        let start = at + within;
        if start
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.source.len())
        {
            return Err(Error::corrupt(format!(
                "{}: grain {index} at offset {at} lies past the end of the file ({} bytes)",
                self.name(),
                self.source.len()
            )));
        }
        self.source.read_at(start, buf)
    }

    fn read_parent(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(parent) = &self.parent else {
            buf.fill(0);
            return Ok(());
        };
        let available = parent
            .disk
            .capacity()
            .saturating_sub(offset)
            .min(buf.len() as u64);
        let (inside, beyond) = buf.split_at_mut(available as usize);
        beyond.fill(0);
        if inside.is_empty() {
            return Ok(());
        }
        parent.disk.read_at(offset, inside)
    }

    fn parent_status(&self, offset: u64, length: u64, out: &mut ExtentCollector) -> Result<()> {
        let inside = self
            .parent
            .as_ref()
            .map_or(0, |p| p.disk.capacity().saturating_sub(offset).min(length));
        if let (Some(parent), true) = (&self.parent, inside > 0) {
            for extent in parent.disk.block_status(offset, inside)? {
                out.push(extent.offset, extent.length, extent.kind)?;
            }
        }
        if inside < length {
            out.push(offset + inside, length - inside, ExtentKind::Zero)?;
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, length: u64) -> Result<()> {
        match offset.checked_add(length) {
            Some(end) if end <= self.header.capacity => Ok(()),
            _ => Err(Error::out_of_bounds(offset, length, self.header.capacity)),
        }
    }
}

impl VirtualDisk for VmdkDisk {
    fn capacity(&self) -> u64 {
        self.header.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let grain_bytes = self.header.grain_bytes;
        self.walk(offset, buf.len() as u64, |at, length, index, grain| {
            let piece = &mut buf[(at - offset) as usize..(at - offset + length) as usize];
            let within = at - index * grain_bytes;
            match grain {
                Grain::Unallocated => self.read_parent(at, piece),
                Grain::Zero => {
                    piece.fill(0);
                    Ok(())
                }
                Grain::Plain(stored) => self.read_plain(index, stored, within, piece),
                Grain::Compressed(stored) => {
                    let needed = grain_bytes.min(self.header.capacity - index * grain_bytes);
                    let bytes =
                        grain::inflate(self.source.as_ref(), &self.header, index, stored, needed)?;
                    piece.copy_from_slice(&bytes[within as usize..(within + length) as usize]);
                    Ok(())
                }
            }
        })
    }

    fn block_status(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.check_range(offset, length)?;
        let mut out = ExtentCollector::new(offset, length);
        self.walk(offset, length, |at, length, _, grain| {
            match grain {
                Grain::Unallocated => self.parent_status(at, length, &mut out)?,
                Grain::Zero => out.push(at, length, ExtentKind::Zero)?,
                Grain::Plain(_) | Grain::Compressed(_) => out.push(at, length, ExtentKind::Data)?,
            }
            Ok(())
        })?;
        out.finish()
    }

    fn info(&self) -> DiskInfo {
        DiskInfo::new(Some(self.header.grain_bytes))
            .with_backing_chain(self.parent.as_ref().map(Backing::chain).unwrap_or_default())
    }
}

/// Loads the grain directory, taking an entry from the redundant directory when the
/// primary's points outside the file.
fn load_directory(source: &dyn ByteSource, header: &Header) -> Result<Vec<u32>> {
    let read = |offset: u64| -> Result<Vec<u32>> {
        let mut bytes = vec![0u8; header.gd_entries as usize * 4];
        source.read_at(offset, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let table_bytes = header.gtes_per_gt * 4;
    let fits = |sector: u32| {
        (u64::from(sector) * SECTOR)
            .checked_add(table_bytes)
            .is_some_and(|end| end <= source.len())
    };
    let mut directory = read(header.gd_offset)?;
    let redundant = header.rgd_offset.map(read).transpose()?;
    for (index, entry) in directory.iter_mut().enumerate() {
        if *entry == 0 || fits(*entry) {
            continue;
        }
        match redundant.as_ref().map(|r| r[index]) {
            Some(spare) if spare != 0 && fits(spare) => *entry = spare,
            _ => {
                return Err(Error::corrupt(format!(
                    "{}: vmdk: grain table {index} at sector {entry} lies past the end of the file ({} bytes)",
                    source.name(),
                    source.len()
                )))
            }
        }
    }
    Ok(directory)
}

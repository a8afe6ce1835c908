//! Detecting and opening VHD files: footer, layout checks and the parent of a differencing disk.

use crate::block_table::BlockTable;
use crate::dynamic_header::{DynamicHeader, HEADER_SIZE};
use crate::fixed::FixedDisk;
use crate::footer::{DiskType, Footer, COOKIE, FOOTER_SIZE};
use crate::sparse::SparseDisk;
use aero_plugin_api::{
    Backing, ByteSource, Error, ErrorKind, OpenContext, ProbeInput, Result, VirtualDisk,
};
use std::sync::Arc;

/// Detection: the `conectix` cookie at offset 0 (the footer copy of a dynamic or differencing
/// VHD; qemu probes the same) or at the start of the last 512 bytes (the footer of any VHD).
/// Whether the footer is consistent is for [`open`] to say, so a damaged VHD is refused as a
/// VHD instead of being read as raw. Files starting with the qcow2, AeroSparse or VMDK magic
/// are left to those formats.
pub(crate) fn probe(input: &ProbeInput<'_>) -> bool {
    const OTHER_MAGICS: [&[u8]; 3] = [b"QFI\xfb", b"AEROSPAR", b"KDMV"];
    if OTHER_MAGICS.iter().any(|m| input.head.starts_with(m)) {
        return false;
    }
    input.head.starts_with(COOKIE) || (input.len >= FOOTER_SIZE && input.tail.starts_with(COOKIE))
}

/// Opens a VHD file.
pub(crate) fn open(
    source: Arc<dyn ByteSource>,
    ctx: &OpenContext<'_>,
) -> Result<Arc<dyn VirtualDisk>> {
    let name = source.name().to_string();
    let len = source.len();
    if len < FOOTER_SIZE || len % 512 != 0 {
        return Err(Error::corrupt(format!(
            "{name}: file length {len} is not a multiple of 512 bytes holding at least the 512-byte VHD footer"
        )));
    }
    let footer_start = len - FOOTER_SIZE;
    let tail = read_vec(source.as_ref(), footer_start, FOOTER_SIZE)?;
    let footer = Footer::parse(&tail, &name, "at the end of the file")?;
    match footer.disk_type {
        DiskType::Fixed => open_fixed(source, &footer),
        DiskType::Dynamic | DiskType::Differencing => open_sparse(source, &footer, &tail, ctx),
    }
}

fn read_vec(source: &dyn ByteSource, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    source.read_at(offset, &mut buf)?;
    Ok(buf)
}

fn open_fixed(source: Arc<dyn ByteSource>, footer: &Footer) -> Result<Arc<dyn VirtualDisk>> {
    let name = source.name();
    let len = source.len();
    let footer_start = len - FOOTER_SIZE;
    // A copy of the footer at offset 0 moves the data to offset 512 when the file has room.
    let has_room_for_copy = footer
        .current_size
        .checked_add(2 * FOOTER_SIZE)
        .is_some_and(|n| len >= n);
    let head = read_vec(source.as_ref(), 0, FOOTER_SIZE)?;
    let data_start = match Footer::parse(&head, name, "at offset 0") {
        Ok(copy)
            if has_room_for_copy
                && copy.disk_type == DiskType::Fixed
                && copy.current_size == footer.current_size =>
        {
            FOOTER_SIZE
        }
        _ => 0,
    };
    let capacity = footer.capacity();
    if data_start
        .checked_add(capacity)
        .is_none_or(|end| end > footer_start)
    {
        return Err(Error::corrupt(format!(
            "{name}: fixed VHD of {capacity} bytes does not fit in the file before its footer at offset {footer_start} (truncated?)"
        )));
    }
    Ok(Arc::new(FixedDisk {
        source,
        data_start,
        capacity,
    }))
}

fn open_sparse(
    source: Arc<dyn ByteSource>,
    footer: &Footer,
    tail: &[u8],
    ctx: &OpenContext<'_>,
) -> Result<Arc<dyn VirtualDisk>> {
    let name = source.name();
    let footer_start = source.len() - FOOTER_SIZE;
    let head = read_vec(source.as_ref(), 0, FOOTER_SIZE)?;
    if head != tail {
        Footer::parse(&head, name, "at offset 0")?;
        return Err(Error::corrupt(format!(
            "{name}: the VHD footer copy at offset 0 differs from the footer at the end of the file"
        )));
    }
    let header_offset = footer.data_offset;
    let header_fits = header_offset
        .checked_add(HEADER_SIZE)
        .is_some_and(|end| end <= footer_start);
    if header_offset < FOOTER_SIZE || header_offset % 512 != 0 || !header_fits {
        return Err(Error::corrupt(format!(
            "{name}: VHD dynamic header offset {header_offset} is not a 512-aligned offset between the footer copy and the footer"
        )));
    }
    let header_bytes = read_vec(source.as_ref(), header_offset, HEADER_SIZE)?;
    let header = DynamicHeader::parse(&header_bytes, name)?;
    let capacity = footer.capacity();
    let table = BlockTable::load(source.as_ref(), header_offset, &header, capacity)?;
    let parent = match footer.disk_type {
        DiskType::Differencing => Some(open_parent(source.as_ref(), &header, ctx)?),
        _ => None,
    };
    Ok(Arc::new(SparseDisk {
        source,
        capacity,
        table,
        parent,
    }))
}

/// Opens the parent of a differencing disk through the first reference that resolves. A
/// refusal (backing files not allowed, or outside the allowed directories) is returned as is.
fn open_parent(
    source: &dyn ByteSource,
    header: &DynamicHeader,
    ctx: &OpenContext<'_>,
) -> Result<Backing> {
    let name = source.name();
    let references = header.parent_references(source)?;
    let mut first_error: Option<Error> = None;
    for reference in &references {
        match ctx.backing.open_backing(reference, Some("vhd")) {
            Ok(backing) => return Ok(backing),
            Err(e) if e.kind() == ErrorKind::BackingNotAllowed => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => Error::new(
            e.kind(),
            format!(
                "{name}: no parent of the differencing VHD could be opened (tried {}): {e}",
                references.join(", ")
            ),
        ),
        None => Error::corrupt(format!(
            "{name}: differencing VHD names no parent (no parent locators and no parent name)"
        )),
    })
}

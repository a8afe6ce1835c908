//! The qcow2 header, its extensions and the backing file name: parsing and validation.

use crate::compressed::Compression;
use aero_plugin_api::{ByteSource, Error, Result};

/// The qcow2 magic, `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Length of a version 2 header (and the start of its extensions).
const V2_HEADER_LEN: u32 = 72;
/// Smallest version 3 header.
const V3_MIN_HEADER_LEN: u32 = 104;
/// Offset of the compression type byte in a version 3 header longer than 104 bytes.
const COMPRESSION_TYPE_OFFSET: usize = 104;

/// Header extension: the backing file's format name.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
/// Longest backing file name qemu accepts.
const MAX_BACKING_NAME: u32 = 1023;
/// Longest backing format name qemu accepts.
const MAX_BACKING_FORMAT: u32 = 15;

/// Largest active L1 table, as in qemu (`QCOW_MAX_L1_SIZE`, "Active L1 table too large").
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table, as in qemu (`QCOW_MAX_REFTABLE_SIZE`).
const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// Most internal snapshots, as in qemu (`QCOW_MAX_SNAPSHOTS`).
const MAX_SNAPSHOTS: u32 = 65536;
/// Smallest snapshot table entry (qemu's `QCowSnapshotHeader`).
const SNAPSHOT_HEADER_LEN: u64 = 40;

/// Incompatible feature bits.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_DATA_FILE
    | INCOMPAT_COMPRESSION
    | INCOMPAT_EXTENDED_L2;

/// The fields of a qcow2 header that reading the active image needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Guest-visible size in bytes (rounded down to whole 512-byte sectors, as qemu does).
    pub size: u64,
    /// Number of entries of the active L1 table.
    pub l1_size: u32,
    /// File offset of the active L1 table.
    pub l1_table_offset: u64,
    /// L2 entries are 128 bits wide and clusters have 32 subclusters.
    pub extended_l2: bool,
    /// How compressed clusters are compressed.
    pub compression: Compression,
    /// The backing file name, when there is one.
    pub backing_file: Option<String>,
    /// The backing file's format from the backing-format header extension.
    pub backing_format: Option<String>,
}

impl Header {
    /// Size of a cluster in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
}

/// Reads and validates the header of `source`; `name` is used in messages.
pub fn read(source: &dyn ByteSource) -> Result<Header> {
    let name = source.name();
    let file_len = source.len();
    let corrupt = |msg: String| Error::corrupt(format!("{name}: qcow2: {msg}"));
    let unsupported = |msg: String| Error::unsupported(format!("{name}: qcow2: {msg}"));

    if file_len < u64::from(V2_HEADER_LEN) {
        return Err(corrupt(format!(
            "file is {file_len} bytes, too short for a qcow2 header ({V2_HEADER_LEN} bytes)"
        )));
    }
    let mut fixed = [0u8; V2_HEADER_LEN as usize];
    source.read_at(0, &mut fixed)?;
    let field = Fields(&fixed);
    if fixed[..4] != MAGIC {
        return Err(corrupt("not a qcow2 image (bad magic)".into()));
    }
    let version = field.u32(4);
    if version != 2 && version != 3 {
        return Err(unsupported(format!(
            "version {version} (offset 4) is not supported (only 2 and 3)"
        )));
    }
    let cluster_bits = field.u32(20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(unsupported(format!(
            "cluster_bits {cluster_bits} is not supported (cluster sizes 512 B to 2 MiB, cluster_bits 9 to 21)"
        )));
    }
    let cluster_size = 1u64 << cluster_bits;
    let crypt_method = field.u32(32);
    if crypt_method != 0 {
        let what = match crypt_method {
            1 => "AES",
            2 => "LUKS",
            _ => "unknown",
        };
        return Err(unsupported(format!(
            "encrypted images are not supported (crypt_method {crypt_method}, {what} encryption)"
        )));
    }

    // The whole header with its extensions lies in the first cluster.
    let head_len = file_len.min(cluster_size) as usize;
    let mut head = vec![0u8; head_len];
    source.read_at(0, &mut head)?;
    let field = Fields(&head);

    let (header_length, incompatible, compression) = if version == 3 {
        if head_len < V3_MIN_HEADER_LEN as usize {
            return Err(corrupt(format!(
                "file is {file_len} bytes, too short for a version 3 header ({V3_MIN_HEADER_LEN} bytes)"
            )));
        }
        let header_length = field.u32(100);
        if header_length < V3_MIN_HEADER_LEN {
            return Err(corrupt(format!(
                "header_length {header_length} is less than {V3_MIN_HEADER_LEN}"
            )));
        }
        if u64::from(header_length) > cluster_size {
            return Err(corrupt(format!(
                "header_length {header_length} exceeds the cluster size {cluster_size}"
            )));
        }
        if header_length as usize > head_len {
            return Err(corrupt(format!(
                "header of {header_length} bytes lies past the end of the file ({file_len} bytes)"
            )));
        }
        let refcount_order = field.u32(96);
        if refcount_order > 6 {
            return Err(corrupt(format!(
                "refcount_order {refcount_order} is out of range (0 to 6)"
            )));
        }
        let incompatible = field.u64(72);
        check_incompatible(incompatible).map_err(unsupported)?;
        let compression_type = if header_length as usize > COMPRESSION_TYPE_OFFSET {
            head[COMPRESSION_TYPE_OFFSET]
        } else {
            0
        };
        let compression = Compression::from_type(compression_type).map_err(unsupported)?;
        let flagged = incompatible & INCOMPAT_COMPRESSION != 0;
        if flagged != (compression != Compression::Deflate) {
            return Err(corrupt(format!(
                "compression type {compression_type} does not match incompatible feature bit 3 (compression type) being {}",
                if flagged { "set" } else { "clear" }
            )));
        }
        (header_length, incompatible, compression)
    } else {
        (V2_HEADER_LEN, 0, Compression::Deflate)
    };

    let size = field.u64(24) & !511;
    let l1_size = field.u32(36);
    let l1_table_offset = field.u64(40);
    check_tables(&field, cluster_size, file_len).map_err(corrupt)?;

    let backing_offset = field.u64(8);
    let backing_len = field.u32(16);
    let backing_file = if backing_offset != 0 && backing_len != 0 {
        if backing_len > MAX_BACKING_NAME {
            return Err(corrupt(format!(
                "backing file name of {backing_len} bytes is too long (at most {MAX_BACKING_NAME})"
            )));
        }
        let end = backing_offset
            .checked_add(u64::from(backing_len))
            .filter(|&end| end <= head_len as u64)
            .ok_or_else(|| {
                corrupt(format!(
                    "backing file name at offset {backing_offset} ({backing_len} bytes) lies outside the first cluster of the file"
                ))
            })?;
        let bytes = &head[backing_offset as usize..end as usize];
        Some(
            std::str::from_utf8(bytes)
                .map_err(|_| corrupt("backing file name is not valid UTF-8".into()))?
                .to_string(),
        )
    } else {
        None
    };

    // Extensions end at the backing file name when it is in the first cluster.
    let ext_end = if backing_offset != 0 && backing_offset < head_len as u64 {
        backing_offset as usize
    } else {
        head_len
    };
    let backing_format = read_extensions(&head, header_length as usize, ext_end)
        .map_err(|msg| corrupt(format!("header extensions: {msg}")))?;

    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_table_offset,
        extended_l2: incompatible & INCOMPAT_EXTENDED_L2 != 0,
        compression,
        backing_file,
        backing_format,
    })
}

/// qemu's limits on the L1, refcount and snapshot tables (`qcow2_do_open`), plus: the refcount
/// and snapshot tables lie inside the file (stricter than qemu, which reads missing bytes as
/// zeros). Checked before anything is allocated from these fields.
fn check_tables(
    field: &Fields<'_>,
    cluster_size: u64,
    file_len: u64,
) -> std::result::Result<(), String> {
    let l1_size = field.u32(36);
    if u64::from(l1_size) * 8 > MAX_L1_BYTES {
        return Err(format!(
            "l1_size {l1_size} (offset 36): the active L1 table is too large ({} bytes, at most {MAX_L1_BYTES})",
            u64::from(l1_size) * 8
        ));
    }
    let in_file = |what: &str, at: usize, offset: u64, len: u64| {
        if offset & (cluster_size - 1) != 0 {
            return Err(format!(
                "{what} offset {offset} (offset {at}) is not aligned to the cluster size {cluster_size}"
            ));
        }
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(format!(
                "{what} at offset {offset} ({len} bytes) lies past the end of the file ({file_len} bytes)"
            ));
        }
        Ok(())
    };
    let refcount_clusters = field.u32(56);
    let refcount_bytes = u64::from(refcount_clusters) * cluster_size;
    if refcount_clusters == 0 {
        return Err(
            "refcount_table_clusters (offset 56) is 0: the image has no refcount table".into(),
        );
    }
    if refcount_bytes > MAX_REFCOUNT_TABLE_BYTES {
        return Err(format!(
            "refcount_table_clusters {refcount_clusters} (offset 56): the refcount table is too large ({refcount_bytes} bytes, at most {MAX_REFCOUNT_TABLE_BYTES})"
        ));
    }
    in_file("refcount table", 48, field.u64(48), refcount_bytes)?;
    let snapshots = field.u32(60);
    if snapshots > MAX_SNAPSHOTS {
        return Err(format!(
            "nb_snapshots {snapshots} (offset 60): too many snapshots (at most {MAX_SNAPSHOTS})"
        ));
    }
    if snapshots > 0 {
        let snapshot_bytes = u64::from(snapshots) * SNAPSHOT_HEADER_LEN;
        in_file("snapshot table", 64, field.u64(64), snapshot_bytes)?;
    }
    Ok(())
}

/// Refuses the incompatible features this plugin cannot read, naming each.
fn check_incompatible(bits: u64) -> std::result::Result<(), String> {
    if bits & INCOMPAT_CORRUPT != 0 {
        return Err("the image is marked corrupt (incompatible feature bit 1, corrupt); repair it with `qemu-img check -r all`".into());
    }
    if bits & INCOMPAT_DATA_FILE != 0 {
        return Err(
            "external data files are not supported (incompatible feature bit 2, external data file)"
                .into(),
        );
    }
    let unknown = bits & !INCOMPAT_KNOWN;
    if unknown != 0 {
        let list: Vec<String> = (0..64)
            .filter(|bit| unknown & (1u64 << bit) != 0)
            .map(|bit| bit.to_string())
            .collect();
        return Err(format!(
            "unknown incompatible feature bit(s) {} are set",
            list.join(", ")
        ));
    }
    Ok(())
}

/// Walks the header extensions in `head[start..end]`; returns the backing format, if any.
fn read_extensions(
    head: &[u8],
    start: usize,
    end: usize,
) -> std::result::Result<Option<String>, String> {
    let mut backing_format = None;
    let mut pos = start;
    while pos.checked_add(8).is_some_and(|p| p <= end) {
        let field = Fields(head);
        let kind = field.u32(pos);
        let len = field.u32(pos + 4) as usize;
        if kind == 0 {
            break;
        }
        let data_start = pos + 8;
        let data_end = data_start
            .checked_add(len)
            .filter(|&e| e <= end)
            .ok_or_else(|| {
                format!(
                    "extension 0x{kind:08x} at offset {pos} ({len} bytes) runs past the end of the header area ({end} bytes)"
                )
            })?;
        if kind == EXT_BACKING_FORMAT {
            if len > MAX_BACKING_FORMAT as usize {
                return Err(format!(
                    "backing format name of {len} bytes is too long (at most {MAX_BACKING_FORMAT})"
                ));
            }
            let text = std::str::from_utf8(&head[data_start..data_end])
                .map_err(|_| "backing format name is not valid UTF-8".to_string())?;
            backing_format = Some(text.to_string());
        }
        // Extension data is padded to a multiple of 8 bytes.
        pos = data_end.next_multiple_of(8);
    }
    Ok(backing_format)
}

/// Big-endian fields of a byte buffer whose length the caller has checked.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::{ErrorKind, MemorySource};

    fn v3_header(cluster_bits: u32) -> Vec<u8> {
        // The header cluster, then a one-cluster refcount table.
        let mut h = vec![0u8; 2 << cluster_bits];
        h[..4].copy_from_slice(&MAGIC);
        h[48..56].copy_from_slice(&(1u64 << cluster_bits).to_be_bytes());
        h[56..60].copy_from_slice(&1u32.to_be_bytes());
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&cluster_bits.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    fn parse(bytes: Vec<u8>) -> Result<Header> {
        read(&MemorySource::new("t.qcow2", bytes))
    }

    #[test]
    fn parses_minimal_v3_header() {
        let h = parse(v3_header(16)).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.compression, Compression::Deflate);
        assert_eq!(h.backing_file, None);
    }

    #[test]
    fn reads_backing_name_and_format_extension() {
        let mut h = v3_header(16);
        h[112..116].copy_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
        h[116..120].copy_from_slice(&5u32.to_be_bytes());
        h[120..125].copy_from_slice(b"qcow2");
        h[8..16].copy_from_slice(&200u64.to_be_bytes());
        h[16..20].copy_from_slice(&8u32.to_be_bytes());
        h[200..208].copy_from_slice(b"base.img");
        let h = parse(h).unwrap();
        assert_eq!(h.backing_file.as_deref(), Some("base.img"));
        assert_eq!(h.backing_format.as_deref(), Some("qcow2"));
    }

    #[test]
    fn refuses_bad_fields_with_named_reasons() {
        let cases: [(usize, &[u8], &str); 5] = [
            (72, &[0, 0, 0, 0, 0, 0, 0, 2], "bit 1, corrupt"),
            (72, &[0, 0, 0, 0, 0, 0, 0, 4], "bit 2, external data file"),
            (72, &[0, 0, 0, 0, 0, 0, 0, 0x20], "bit(s) 5"),
            (32, &[0, 0, 0, 2], "LUKS"),
            (96, &[0, 0, 0, 7], "refcount_order 7"),
        ];
        for (at, bytes, needle) in cases {
            let mut h = v3_header(16);
            h[at..at + bytes.len()].copy_from_slice(bytes);
            let err = parse(h).unwrap_err();
            assert!(err.message().contains(needle), "{err}");
            assert!(err.message().starts_with("t.qcow2: qcow2: "), "{err}");
        }
    }

    #[test]
    fn refuses_tables_qemu_refuses_or_past_the_end() {
        let cases: [(usize, &[u8], &str); 6] = [
            (
                36,
                &[0x7f, 0xff, 0xff, 0xff],
                "l1_size 2147483647 (offset 36): the active L1 table is too large",
            ),
            (
                36,
                &[0, 0x40, 0, 1],
                "too large (33554440 bytes, at most 33554432)",
            ),
            (
                56,
                &[0, 0, 0, 0],
                "refcount_table_clusters (offset 56) is 0",
            ),
            (
                56,
                &[0, 0, 0, 129],
                "refcount table is too large (8454144 bytes",
            ),
            (
                55,
                &[1],
                "refcount table offset 65537 (offset 48) is not aligned",
            ),
            (
                60,
                &[0, 1, 0, 1],
                "nb_snapshots 65537 (offset 60): too many snapshots",
            ),
        ];
        for (at, bytes, needle) in cases {
            let mut h = v3_header(16);
            h[at..at + bytes.len()].copy_from_slice(bytes);
            let err = parse(h).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert!(err.message().contains(needle), "{needle}: {err}");
        }
        let mut h = v3_header(16);
        h[60..64].copy_from_slice(&2u32.to_be_bytes());
        h[64..72].copy_from_slice(&(1u64 << 20).to_be_bytes());
        let err = parse(h).unwrap_err();
        assert!(
            err.message()
                .contains("snapshot table at offset 1048576 (80 bytes) lies past the end"),
            "{err}"
        );
        let mut h = v3_header(16);
        h[56..60].copy_from_slice(&2u32.to_be_bytes());
        let err = parse(h).unwrap_err();
        assert!(
            err.message()
                .contains("refcount table at offset 65536 (131072 bytes) lies past the end"),
            "{err}"
        );
    }

    #[test]
    fn refuses_oversized_extension_and_truncation() {
        let mut h = v3_header(16);
        h[112..116].copy_from_slice(&1u32.to_be_bytes());
        h[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(h).unwrap_err().kind(), ErrorKind::Corrupt);
        for len in [0, 4, 71, 80] {
            assert!(parse(v3_header(16)[..len].to_vec()).is_err());
        }
    }
}

//! Writes differencing VHDs for tests (qemu cannot create them).

/// What to put in a differencing VHD.
pub struct DiffImage<'a> {
    pub capacity: u64,
    pub block_size: u32,
    /// Parent locators: platform code and raw locator bytes.
    pub locators: Vec<(&'a [u8; 4], Vec<u8>)>,
    /// The parent's unicode name in the dynamic header.
    pub parent_name: &'a str,
    /// Sector-aligned writes stored in this image: offset and bytes.
    pub writes: Vec<(u64, Vec<u8>)>,
}

/// UTF-16LE bytes of `text` (W2ru / W2ku locators).
pub fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)))
}

fn align512(n: usize) -> usize {
    n.div_ceil(512) * 512
}

/// Sets the VHD checksum field at `at` (4 bytes) of `bytes`.
pub fn seal(bytes: &mut [u8], at: usize) {
    bytes[at..at + 4].fill(0);
    let sum = checksum(bytes);
    bytes[at..at + 4].copy_from_slice(&sum.to_be_bytes());
}

impl DiffImage<'_> {
    /// The image file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let block = self.block_size as usize;
        let entries = (self.capacity as usize).div_ceil(block);
        let bitmap_size = align512(block / 512 / 8);
        let table_offset = 1536;
        let mut file = vec![0u8; table_offset + align512(entries * 4)];
        file[table_offset..].fill(0xff);

        // Locator data after the BAT.
        let mut locator_entries = Vec::new();
        for (code, data) in &self.locators {
            let at = file.len();
            file.extend_from_slice(data);
            file.resize(align512(file.len()), 0);
            locator_entries.push((*code, data.len(), at));
        }

        // Blocks with their bitmaps, in order of first write.
        let mut block_at = vec![None; entries];
        for (offset, data) in &self.writes {
            for (i, byte) in data.iter().enumerate() {
                let guest = *offset as usize + i;
                let index = guest / block;
                let start = *block_at[index].get_or_insert_with(|| {
                    let start = file.len();
                    file.resize(start + bitmap_size + block, 0);
                    let sector = (start / 512) as u32;
                    let entry = table_offset + index * 4;
                    file[entry..entry + 4].copy_from_slice(&sector.to_be_bytes());
                    start
                });
                let sector = (guest % block) / 512;
                file[start + sector / 8] |= 0x80 >> (sector % 8);
                file[start + bitmap_size + guest % block] = *byte;
            }
        }

        let mut footer = vec![0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        footer[8..12].copy_from_slice(&2u32.to_be_bytes());
        footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        footer[16..24].copy_from_slice(&512u64.to_be_bytes());
        footer[28..32].copy_from_slice(b"aero");
        footer[36..40].copy_from_slice(b"Wi2k");
        footer[40..48].copy_from_slice(&self.capacity.to_be_bytes());
        footer[48..56].copy_from_slice(&self.capacity.to_be_bytes());
        footer[56..60].copy_from_slice(&[0x01, 0x00, 0x10, 0x3f]);
        footer[60..64].copy_from_slice(&4u32.to_be_bytes());
        footer[68..84].copy_from_slice(&[0x5a; 16]);
        seal(&mut footer, 64);

        let mut header = vec![0u8; 1024];
        header[..8].copy_from_slice(b"cxsparse");
        header[8..16].fill(0xff);
        header[16..24].copy_from_slice(&(table_offset as u64).to_be_bytes());
        header[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        header[28..32].copy_from_slice(&(entries as u32).to_be_bytes());
        header[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        let name: Vec<u8> = self
            .parent_name
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        header[64..64 + name.len()].copy_from_slice(&name);
        for (i, (code, len, at)) in locator_entries.iter().enumerate() {
            let e = 576 + 24 * i;
            header[e..e + 4].copy_from_slice(*code);
            header[e + 4..e + 8].copy_from_slice(&(align512(*len) as u32).to_be_bytes());
            header[e + 8..e + 12].copy_from_slice(&(*len as u32).to_be_bytes());
            header[e + 16..e + 24].copy_from_slice(&(*at as u64).to_be_bytes());
        }
        seal(&mut header, 36);

        file[..512].copy_from_slice(&footer);
        file[512..1536].copy_from_slice(&header);
        file.extend_from_slice(&footer);
        file
    }
}

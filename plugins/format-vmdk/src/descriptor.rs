//! The embedded text descriptor: which kind of VMDK this is and its parent, if any.

use aero_plugin_api::{ByteSource, Error, Result};

/// The largest embedded descriptor read.
const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;

/// The kinds of VMDK whose data lives in this one sparse extent.
const SUPPORTED: [&str; 2] = ["monolithicSparse", "streamOptimized"];

/// What the descriptor says that matters for reading.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// `createType`, when given.
    pub create_type: Option<String>,
    /// `parentFileNameHint` of a delta disk.
    pub parent: Option<String>,
}

impl Descriptor {
    /// Reads the descriptor at `(offset, length)` and refuses kinds this plugin cannot read.
    pub fn read(source: &dyn ByteSource, (offset, length): (u64, u64)) -> Result<Descriptor> {
        let name = source.name();
        let length = length.min(MAX_DESCRIPTOR_BYTES);
        if offset
            .checked_add(length)
            .is_none_or(|end| end > source.len())
        {
            return Err(Error::corrupt(format!(
                "{name}: descriptor of {length} bytes at offset {offset} lies past the end of the file"
            )));
        }
        let mut text = vec![0u8; length as usize];
        source.read_at(offset, &mut text)?;
        let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
        let descriptor = Self::parse(&String::from_utf8_lossy(&text[..end]));
        if let Some(kind) = &descriptor.create_type {
            if !SUPPORTED.contains(&kind.as_str()) {
                return Err(Error::unsupported(format!(
                    "{name}: VMDK createType '{kind}' is not supported (supported: {})",
                    SUPPORTED.join(", ")
                )));
            }
        }
        Ok(descriptor)
    }

    fn parse(text: &str) -> Descriptor {
        let mut descriptor = Descriptor::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "createType" => descriptor.create_type = Some(value),
                "parentFileNameHint" if !value.is_empty() => descriptor.parent = Some(value),
                _ => {}
            }
        }
        descriptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aero_plugin_api::MemorySource;

    #[test]
    fn parses_type_and_parent() {
        let text = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicSparse\"\n\
                    parentFileNameHint=\"base.vmdk\"\nRW 8 SPARSE \"x.vmdk\"\n";
        let d = Descriptor::parse(text);
        assert_eq!(d.create_type.as_deref(), Some("monolithicSparse"));
        assert_eq!(d.parent.as_deref(), Some("base.vmdk"));
    }

    #[test]
    fn refuses_other_kinds() {
        let src = MemorySource::new("flat.vmdk", b"createType=\"monolithicFlat\"\n\0\0".to_vec());
        let error = Descriptor::read(&src, (0, 30)).unwrap_err();
        assert!(
            error
                .message()
                .contains("flat.vmdk: VMDK createType 'monolithicFlat'"),
            "{error}"
        );
        assert!(Descriptor::read(&src, (10, 30)).is_err());
    }
}

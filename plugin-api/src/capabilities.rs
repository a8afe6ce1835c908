//! What a plugin can do besides reading and probing.

use std::fmt;
use std::ops::BitOr;

/// What a plugin declares about itself besides reading and probing (a set of flags).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// No capabilities.
    pub const NONE: Self = Capabilities(0);
    /// `block_status` reports zero extents (otherwise everything is data).
    pub const ZERO_EXTENTS: Self = Capabilities(1);
    /// The format can have backing files. ABI v1 never passes them across: opening such an
    /// image through a library fails with [`ErrorKind::BackingNotAllowed`](crate::ErrorKind).
    pub const BACKING_FILES: Self = Capabilities(2);
    /// The plugin can write images ([`DiskFormat::writer`](crate::DiskFormat::writer)). ABI v1
    /// does not carry writers: a library never declares it.
    pub const WRITE: Self = Capabilities(4);

    const NAMES: [(Self, &'static str); 3] = [
        (Self::ZERO_EXTENTS, "zero-extents"),
        (Self::BACKING_FILES, "backing-files"),
        (Self::WRITE, "write"),
    ];

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags without those of `other`.
    pub fn without(self, other: Self) -> Self {
        Capabilities(self.0 & !other.0)
    }
}

impl BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Capabilities(self.0 | rhs.0)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Self::NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| (*name).to_string())
            .collect();
        let known = Self::NAMES.iter().fold(0, |acc, (flag, _)| acc | flag.0);
        if self.0 & !known != 0 {
            parts.push(format!("unknown({:#x})", self.0 & !known));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_display() {
        assert_eq!(Capabilities::NONE.to_string(), "none");
        let both = Capabilities::ZERO_EXTENTS | Capabilities::BACKING_FILES;
        assert_eq!(both.to_string(), "zero-extents, backing-files");
        assert!(both.contains(Capabilities::ZERO_EXTENTS));
        assert_eq!(Capabilities(16).to_string(), "unknown(0x10)");
        assert_eq!(
            (both | Capabilities::WRITE).without(Capabilities::WRITE),
            both
        );
    }
}

//! A set of format plugins: lookup by name or alias, and detection by probe.

use crate::format::{DiskFormat, ProbeInput, ProbeResult};
use crate::{ByteSource, Error, FormatRegistration, Result};
use std::sync::Arc;

/// The format plugins the host knows, in a fixed order.
#[derive(Clone, Default)]
pub struct Registry {
    formats: Vec<Arc<dyn DiskFormat>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every built-in plugin registered with [`register_format!`](crate::register_format),
    /// sorted by name.
    pub fn builtin() -> Result<Self> {
        let mut registry = Self::new();
        let mut formats: Vec<_> = inventory::iter::<FormatRegistration>
            .into_iter()
            .map(|r| (r.create)())
            .collect();
        formats.sort_by(|a, b| a.name().cmp(b.name()));
        for format in formats {
            registry.add(format)?;
        }
        Ok(registry)
    }

    /// Adds a plugin; a name or alias that is already taken is an error.
    pub fn add(&mut self, format: Arc<dyn DiskFormat>) -> Result<()> {
        for name in std::iter::once(format.name()).chain(format.aliases().iter().copied()) {
            if let Some(existing) = self.get(name) {
                return Err(Error::invalid_input(format!(
                    "format plugin name '{name}' is registered twice (plugin '{}' version {} and plugin '{}' version {})",
                    existing.name(),
                    existing.version(),
                    format.name(),
                    format.version()
                )));
            }
        }
        self.formats.push(format);
        Ok(())
    }

    /// Replaces the plugin called `format.name()` (or adds it).
    pub fn replace(&mut self, format: Arc<dyn DiskFormat>) {
        self.formats.retain(|f| f.name() != format.name());
        self.formats.push(format);
    }

    /// All plugins.
    pub fn formats(&self) -> &[Arc<dyn DiskFormat>] {
        &self.formats
    }

    /// The plugin with this name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Arc<dyn DiskFormat>> {
        self.formats
            .iter()
            .find(|f| {
                f.name().eq_ignore_ascii_case(name)
                    || f.aliases().iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .cloned()
    }

    /// The plugin with this name, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<Arc<dyn DiskFormat>> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.formats.iter().map(|f| f.name()).collect();
            Error::invalid_input(format!(
                "unknown format '{name}' (known formats: auto, {})",
                known.join(", ")
            ))
        })
    }

    /// Picks the plugin for `source` by probing: the first plugin that matches, else the
    /// fallback (raw).
    pub fn detect(&self, source: &dyn ByteSource) -> Result<Arc<dyn DiskFormat>> {
        ProbeInput::read(source, |input| {
            let verdicts: Vec<_> = self.formats.iter().map(|f| (f, f.probe(&input))).collect();
            verdicts
                .iter()
                .find(|(_, v)| *v == ProbeResult::Match)
                .or_else(|| verdicts.iter().find(|(_, v)| *v == ProbeResult::Fallback))
                .map(|(f, _)| Arc::clone(f))
        })
        .map_err(|e| e.context(format!("probing {}", source.name())))?
        .ok_or_else(|| {
            Error::unsupported(format!(
                "{}: no format plugin recognises this file",
                source.name()
            ))
        })
    }
}

//! aerosparse format plugin (in progress).

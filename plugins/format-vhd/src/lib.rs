//! vhd format plugin (in progress).

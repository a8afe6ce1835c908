//! qcow2 format plugin (in progress).

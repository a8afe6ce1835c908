//! Integration tests of `aero-chunked`: one binary, one module per area.

mod incremental;
mod storage;

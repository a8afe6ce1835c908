//! Integration tests of `aero-chunked`: one binary, one module per area.

mod storage;

//! Integration tests of the testkit.

mod standalone;

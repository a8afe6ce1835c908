//! The shared plugin conformance suite.

aero_plugin_testkit::conformance_tests!(format_aerosparse::AeroSparseFormat);

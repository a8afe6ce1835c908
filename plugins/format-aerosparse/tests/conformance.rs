//! The shared plugin conformance suite.

aero_plugin_api::conformance_tests!(format_aerosparse::AeroSparseFormat);

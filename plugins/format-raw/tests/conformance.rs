aero_plugin_testkit::conformance_tests!(format_raw::RawFormat);

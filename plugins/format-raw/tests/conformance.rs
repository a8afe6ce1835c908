aero_plugin_api::conformance_tests!(format_raw::RawFormat);

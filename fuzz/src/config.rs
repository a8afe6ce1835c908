//! The config loader of `aero-host run`: any text is refused with a message naming the file,
//! or gives a config whose jobs are valid and whose storage and serve settings resolve (or are
//! refused) without panicking.

use aero_host::config::Config;
use aero_plugin_host::PluginSet;
use std::path::Path;

// The built-in storage backends register themselves when linked, as in the binary.
use backend_fs as _;
use backend_memory as _;
use backend_s3 as _;

/// Where the fuzzed config claims to come from.
const PATH: &str = "/fuzz/aero.toml";

/// Loads `data` as a config file (no environment), then resolves its storage against the
/// built-in backends and its `[serve]` table into settings.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let config = match Config::parse(path, text.to_string(), std::iter::empty()) {
        Ok(config) => config,
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains(PATH),
                "an error that names no file: {message}"
            );
            return;
        }
    };
    for job in &config.publish {
        let file = &job.args.file;
        assert!(file.is_absolute(), "{} is not absolute", file.display());
        job.args
            .validate()
            .unwrap_or_else(|e| panic!("an accepted job is invalid: {e:#}"));
    }
    for p in &config.plugins.paths {
        assert!(
            p.is_absolute(),
            "plugin path {} is not absolute",
            p.display()
        );
    }
    let plugins = PluginSet::builtin().expect("the built-in plugins");
    if let Err(e) = config.storage_spec(&plugins) {
        let message = format!("{e:#}");
        assert!(
            message.contains(PATH),
            "an error that names no file: {message}"
        );
    }
    if let Some(serve) = &config.serve {
        let _ = serve.resolve_with(&|_| None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_accepted() {
        let text = include_str!("../../config.example.toml");
        let config = Config::parse(Path::new(PATH), text.to_string(), std::iter::empty()).unwrap();
        assert!(!config.publish.is_empty());
        check_config(text.as_bytes());
        let jobs = include_str!("../corpus/config/seed-jobs.toml");
        let config = Config::parse(Path::new(PATH), jobs.to_string(), std::iter::empty()).unwrap();
        assert_eq!(config.publish.len(), 2);
        assert!(config.serve.is_some());
        check_config(jobs.as_bytes());
    }
}

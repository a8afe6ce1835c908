//! The defaults stated in three places agree: `--help` of `serve` and `publish`, the option
//! tables of `docs/serve.md` and `docs/usage.md`, and `config.example.toml` (whose values are
//! the defaults unless their comment starts with "example", or, in `[[publish]]`, the line is
//! commented out). Each is parsed and compared key by key.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Key → default, as one source states it.
type Defaults = BTreeMap<String, String>;

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The defaults `aero-host COMMAND --help` shows, by config key (`--max-range-bytes` →
/// `max_range_bytes`); the global flags are left out.
fn help_defaults(command: &str) -> Defaults {
    let help = String::from_utf8(ok(run(&[command, "--help"])).stdout).unwrap();
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed
            .strip_prefix("-h, ")
            .unwrap_or(trimmed)
            .strip_prefix("--")
            .filter(|_| line.starts_with("  "));
        match flag {
            Some(rest) => {
                let name = rest.split([' ', '[', '<']).next().unwrap();
                flags.push((name.replace('-', "_"), String::new()));
            }
            None => {
                if let Some((_, text)) = flags.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    flags
        .into_iter()
        .filter(|(key, _)| !matches!(key.as_str(), "storage" | "plugin" | "log_level" | "help"))
        .filter_map(|(key, text)| {
            let value = match text.split_once("[default: ") {
                Some((_, rest)) => rest.split_once(']')?.0.trim_matches('"'),
                None => text.split_once("; default ")?.1.split_once(']')?.0,
            };
            Some((key, value.to_string()))
        })
        .collect()
}

/// The defaults of a Markdown option table: the key is the first `` `word` `` of `key_cell`
/// that is not a flag, the default the first word (or `` `value` ``) of `default_cell`.
/// A plain "same" repeats the row above; "—", "none", "required" and "inferred" state none.
fn doc_defaults(doc: &str, heading: &str, key_cell: usize, default_cell: usize) -> Defaults {
    let section = doc
        .split_once(heading)
        .unwrap_or_else(|| panic!("no '{heading}' section"))
        .1;
    let mut defaults = Defaults::new();
    let mut previous = String::new();
    for row in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !row.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(keys), Some(default)) = (cells.get(key_cell), cells.get(default_cell)) else {
            continue;
        };
        let Some(key) = keys
            .split('`')
            .skip(1)
            .step_by(2)
            .find(|w| !w.starts_with(['-', '[']))
        else {
            continue;
        };
        let value = if let Some(quoted) = default.strip_prefix('`') {
            quoted
                .split('`')
                .next()
                .unwrap()
                .trim_matches('"')
                .to_string()
        } else {
            match default.split_whitespace().next().unwrap_or("") {
                "same" => previous.clone(),
                "—" | "none" | "required" | "inferred" | "" => continue,
                word => word.to_string(),
            }
        };
        previous = value.clone();
        defaults.insert(key.to_string(), value);
    }
    defaults
}

/// The keys of a table of `config.example.toml` (`[serve]` is commented out as a whole) and
/// the values stated as defaults.
fn example_defaults(table: &str) -> (Vec<String>, Defaults) {
    let text = repo_file("config.example.toml");
    let mut keys = Vec::new();
    let mut defaults = Defaults::new();
    let mut inside = false;
    for line in text.lines() {
        let uncommented = line.strip_prefix("# ").unwrap_or(line).trim();
        if uncommented.starts_with('[') {
            inside = uncommented == table;
            continue;
        }
        if !inside {
            continue;
        }
        let (pair, comment) = uncommented
            .split_once(" #")
            .map_or((uncommented, ""), |(p, c)| (p, c.trim()));
        let Ok(parsed) = pair.parse::<toml::Table>() else {
            continue;
        };
        let Some((key, value)) = parsed.into_iter().next() else {
            continue;
        };
        keys.push(key.clone());
        let commented_job = table == "[[publish]]" && line.starts_with('#');
        if comment.starts_with("example") || commented_job {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        defaults.insert(key, value);
    }
    (keys, defaults)
}

/// Every default `--help` states is in the docs, the same; every key of the docs is in the
/// example; and any two sources stating a key's default agree.
#[track_caller]
fn agree(help: &Defaults, docs: &Defaults, example: &(Vec<String>, Defaults), doc_name: &str) {
    assert!(!help.is_empty() && !docs.is_empty() && !example.1.is_empty());
    for (key, value) in help {
        assert_eq!(
            docs.get(key),
            Some(value),
            "--{} defaults to '{value}' in --help; {doc_name} says otherwise",
            key.replace('_', "-")
        );
    }
    for key in docs.keys() {
        assert!(
            example.0.contains(key),
            "{doc_name} documents '{key}', config.example.toml does not show it"
        );
    }
    for (key, value) in &example.1 {
        for (source, stated) in [("--help", help.get(key)), (doc_name, docs.get(key))] {
            if let Some(stated) = stated {
                assert_eq!(
                    stated, value,
                    "config.example.toml shows {key} = '{value}' as the default, {source} says '{stated}'"
                );
            }
        }
    }
}

#[test]
fn serve_defaults_agree_in_help_docs_and_example() {
    let docs = doc_defaults(&repo_file("docs/serve.md"), "## Options", 2, 4);
    assert!(docs.contains_key("listen_addr") && docs.contains_key("log_level"));
    agree(
        &help_defaults("serve"),
        &docs,
        &example_defaults("[serve]"),
        "docs/serve.md",
    );
}

#[test]
fn publish_defaults_agree_in_help_docs_and_example() {
    let docs = doc_defaults(&repo_file("docs/usage.md"), "## `publish`", 1, 2);
    assert!(docs.contains_key("chunk_size") && docs.contains_key("cache_control_manifest"));
    agree(
        &help_defaults("publish"),
        &docs,
        &example_defaults("[[publish]]"),
        "docs/usage.md",
    );
}

/// `nbd --help` and the limits table of `docs/nbd.md` agree; every default of `--help` is in
/// the table but the listen address and the image format.
#[test]
fn nbd_defaults_agree_in_help_and_docs() {
    let help = help_defaults("nbd");
    let doc = repo_file("docs/nbd.md");
    let table = doc.split_once("## Limits").expect("a Limits section").1;
    let mut documented = vec!["listen".to_string(), "format".to_string()];
    for row in table.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let key = cells[1]
            .trim_matches('`')
            .trim_start_matches("--")
            .replace('-', "_");
        assert_eq!(
            help.get(&key),
            Some(&cells[2].to_string()),
            "--{key} in docs/nbd.md"
        );
        documented.push(key);
    }
    for key in help.keys() {
        assert!(
            documented.contains(key),
            "--{key} is not in docs/nbd.md's Limits table"
        );
    }
}

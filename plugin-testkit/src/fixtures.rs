//! The fixture set: a directory of images plus `expected.tsv`, and the built-in set.

use aero_plugin_api::DiskFormat;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the fixture directory [`Fixtures::builtin`] loads.
pub const FIXTURES_ENV: &str = "AERO_FIXTURES";

/// What to do when qemu-img is missing.
pub(crate) const QEMU_IMG_HINT: &str =
    "qemu-img is needed for the fixtures and raw views: install it (Debian/Ubuntu: apt-get install qemu-utils; macOS: brew install qemu)";

const HEADER: [&str; 5] = [
    "name",
    "qemu_format",
    "virtual_size",
    "sha256_of_raw_view",
    "notes",
];

/// AeroSparse images made from `src.raw`: file name and extra `make-aerosparse.py` arguments.
const AEROSPARSE: [(&str, &[&str]); 2] = [
    ("src.aerosparse", &[]),
    (
        "src-4k-shuffled.aerosparse",
        &["--block-size", "4096", "--shuffle", "7"],
    ),
];

/// One image of the set, as described by its `expected.tsv` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// File name inside the fixture directory.
    pub name: String,
    /// The format's name as qemu-img spells it (`qcow2`, `vpc`, `raw`) or `aerosparse`.
    pub qemu_format: String,
    /// Guest-visible size in bytes, when known.
    pub virtual_size: Option<u64>,
    /// sha256 (lowercase hex) of the guest-visible bytes; `None` for `-`.
    pub sha256: Option<String>,
    /// Free-form notes (`backing file base.qcow2`, `truncated file`).
    pub notes: String,
    /// Where the image is.
    pub path: PathBuf,
}

impl Fixture {
    /// An invalid image every reader must refuse: no expected bytes and notes say `truncated`.
    pub fn must_fail(&self) -> bool {
        self.sha256.is_none() && self.notes.contains("truncated")
    }

    /// Whether the image has a backing file (notes start with `backing file`).
    pub fn has_backing(&self) -> bool {
        self.notes.starts_with("backing file")
    }

    /// Whether `format` reads this image: its qemu format is the plugin's name or an alias.
    pub fn belongs_to(&self, format: &dyn DiskFormat) -> bool {
        std::iter::once(format.name())
            .chain(format.aliases().iter().copied())
            .any(|name| name.eq_ignore_ascii_case(&self.qemu_format))
    }
}

/// A directory of images described by its `expected.tsv`.
#[derive(Debug, Clone)]
pub struct Fixtures {
    dir: PathBuf,
    entries: Vec<Fixture>,
}

impl Fixtures {
    /// Reads `dir/expected.tsv` (columns `name qemu_format virtual_size sha256_of_raw_view
    /// notes`, `-` for unknown) and checks that every image it names exists.
    pub fn load(dir: impl AsRef<Path>) -> Result<Fixtures, String> {
        let dir = dir.as_ref();
        let tsv = dir.join("expected.tsv");
        let text =
            fs::read_to_string(&tsv).map_err(|e| format!("reading {}: {e}", tsv.display()))?;
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.split('\t').eq(HEADER) => {}
            _ => {
                return Err(format!(
                    "{}: the first line must be the header {}",
                    tsv.display(),
                    HEADER.join("\\t")
                ))
            }
        }
        let mut entries: Vec<Fixture> = Vec::new();
        for (index, line) in lines.filter(|(_, line)| !line.trim().is_empty()) {
            let fixture = parse_row(dir, line)
                .map_err(|e| format!("{} line {}: {e}", tsv.display(), index + 1))?;
            if entries.iter().any(|f| f.name == fixture.name) {
                return Err(format!(
                    "{} line {}: a second row for {}",
                    tsv.display(),
                    index + 1,
                    fixture.name
                ));
            }
            entries.push(fixture);
        }
        Ok(Fixtures {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    /// The fixture set of the directory in `$AERO_FIXTURES` ([`FIXTURES_ENV`]); when unset, the
    /// project's set in `<workspace root>/target/fixtures`, generated on first use with
    /// `<shared>/fixtures/make-fixtures.sh` (needs qemu-img). Either way the AeroSparse images
    /// are added with `<shared>/fixtures/make-aerosparse.py` (needs python3) when missing.
    /// `<shared>` is `$AERO_SHARED_DIR`, else `<workspace root>/../shared`. Safe to call from
    /// test binaries running in parallel.
    ///
    /// # Panics
    /// When the set cannot be found or generated; the message says why.
    pub fn builtin() -> Fixtures {
        prepare_builtin().unwrap_or_else(|e| panic!("preparing the built-in fixtures: {e}"))
    }

    /// The directory holding the images.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every image, in `expected.tsv` order.
    pub fn entries(&self) -> &[Fixture] {
        &self.entries
    }

    /// The images `format` reads.
    pub fn for_format(&self, format: &dyn DiskFormat) -> Vec<&Fixture> {
        self.entries
            .iter()
            .filter(|f| f.belongs_to(format))
            .collect()
    }
}

fn parse_row(dir: &Path, line: &str) -> Result<Fixture, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    if !(4..=5).contains(&fields.len()) {
        return Err(format!(
            "expected 5 tab-separated columns, found {}",
            fields.len()
        ));
    }
    let name = fields[0];
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("'{name}' is not a plain file name"));
    }
    let virtual_size = match fields[2] {
        "-" => None,
        size => Some(
            size.parse()
                .map_err(|_| format!("{name}: virtual_size '{size}' is not a number or '-'"))?,
        ),
    };
    let sha256 = match fields[3] {
        "-" => None,
        sha if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(sha.to_ascii_lowercase())
        }
        sha => return Err(format!("{name}: '{sha}' is not a sha256 in hex or '-'")),
    };
    let path = dir.join(name);
    if !path.is_file() {
        return Err(format!("{name}: {} does not exist", path.display()));
    }
    Ok(Fixture {
        name: name.to_string(),
        qemu_format: fields[1].to_string(),
        virtual_size,
        sha256,
        notes: fields.get(4).copied().unwrap_or("").to_string(),
        path,
    })
}

fn prepare_builtin() -> Result<Fixtures, String> {
    qemu_img_present()?;
    if let Some(dir) = std::env::var_os(FIXTURES_ENV).map(PathBuf::from) {
        let set = Fixtures::load(&dir)?;
        let complete = AEROSPARSE
            .iter()
            .all(|(name, _)| set.entries.iter().any(|f| f.name == *name));
        if complete {
            return Ok(set);
        }
        add_aerosparse(&dir, &shared_dir(&workspace_root()?))?;
        return Fixtures::load(&dir);
    }
    let root = workspace_root()?;
    let shared = shared_dir(&root);
    let dir = root.join("target").join("fixtures");
    if !dir.join("expected.tsv").is_file() {
        generate_base(&dir, &shared)?;
    }
    add_aerosparse(&dir, &shared)?;
    Fixtures::load(&dir)
}

/// `$AERO_SHARED_DIR`, else `<root>/../shared`.
fn shared_dir(root: &Path) -> PathBuf {
    std::env::var_os("AERO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared"))
}

/// Fails with an install hint when qemu-img cannot be run.
pub(crate) fn qemu_img_present() -> Result<(), String> {
    match Command::new("qemu-img").arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "qemu-img --version failed ({}); {QEMU_IMG_HINT}",
            output.status
        )),
        Err(e) => Err(format!("running qemu-img: {e}; {QEMU_IMG_HINT}")),
    }
}

/// The nearest directory, from `CARGO_MANIFEST_DIR` or the current directory upwards, whose
/// `Cargo.toml` declares `[workspace]`.
fn workspace_root() -> Result<PathBuf, String> {
    let start = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            std::env::current_dir().map_err(|e| format!("reading the current directory: {e}"))?
        }
    };
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|line| line.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no Cargo.toml with [workspace] in {} or above",
                start.display()
            )
        })
}

/// A path next to `path` that no other process uses.
fn temp_sibling(path: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{}-{nanos}.tmp", std::process::id()))
}

/// Runs `command`, with its stderr in the error.
fn run_command(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Makes the qemu-img fixtures in a private directory and renames it into place; a process
/// that loses the race drops its copy.
fn generate_base(dir: &Path, shared: &Path) -> Result<(), String> {
    let script = shared.join("fixtures").join("make-fixtures.sh");
    if !script.is_file() {
        return Err(format!(
            "{} not found (set AERO_SHARED_DIR to the shared directory)",
            script.display()
        ));
    }
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let temp = temp_sibling(dir);
    let made = run_command(Command::new("bash").arg(&script).arg(&temp))
        .and_then(|()| fs::rename(&temp, dir).map_err(|e| e.to_string()));
    let _ = fs::remove_dir_all(&temp);
    match made {
        Ok(()) => Ok(()),
        Err(_) if dir.join("expected.tsv").is_file() => Ok(()),
        Err(e) => Err(format!("generating {}: {e}", dir.display())),
    }
}

/// Adds the AeroSparse images made from `src.raw` and their rows, unless present. Files and
/// `expected.tsv` are written under temporary names and renamed, so readers never see half.
fn add_aerosparse(dir: &Path, shared: &Path) -> Result<(), String> {
    let set = Fixtures::load(dir)?;
    let missing: Vec<_> = AEROSPARSE
        .iter()
        .filter(|(name, _)| !set.entries.iter().any(|f| f.name == *name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let src = set
        .entries
        .iter()
        .find(|f| f.name == "src.raw")
        .ok_or_else(|| {
            format!(
                "{}: no src.raw row to make AeroSparse images from",
                dir.display()
            )
        })?;
    let script = shared.join("fixtures").join("make-aerosparse.py");
    let mut rows = Vec::new();
    for (name, args) in missing {
        let out = dir.join(name);
        let temp = temp_sibling(&out);
        let made = run_command(
            Command::new("python3")
                .arg(&script)
                .arg(&src.path)
                .arg(&temp)
                .args(*args),
        )
        .and_then(|()| fs::rename(&temp, &out).map_err(|e| e.to_string()));
        if let Err(e) = made {
            let _ = fs::remove_file(&temp);
            return Err(format!("generating {}: {e}", out.display()));
        }
        rows.push((
            *name,
            format!(
                "{name}\taerosparse\t{}\t{}\tfrom src.raw{}{}\n",
                src.virtual_size.map_or("-".into(), |s| s.to_string()),
                src.sha256.as_deref().unwrap_or("-"),
                if args.is_empty() { "" } else { " with " },
                args.join(" ")
            ),
        ));
    }
    let tsv = dir.join("expected.tsv");
    let mut text =
        fs::read_to_string(&tsv).map_err(|e| format!("reading {}: {e}", tsv.display()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // Another process may have added some of the rows meanwhile.
    for (name, row) in rows {
        if !text
            .lines()
            .any(|line| line.split('\t').next() == Some(name))
        {
            text.push_str(&row);
        }
    }
    let temp = temp_sibling(&tsv);
    fs::write(&temp, text)
        .and_then(|()| fs::rename(&temp, &tsv))
        .map_err(|e| {
            let _ = fs::remove_file(&temp);
            format!("writing {}: {e}", tsv.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(tag: &str, tsv: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aero-fixtures-{}-{tag}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.raw"), [0u8; 512]).unwrap();
        fs::write(dir.join("b.qcow2"), [1u8; 100]).unwrap();
        fs::write(dir.join("expected.tsv"), tsv).unwrap();
        dir
    }

    const HEAD: &str = "name\tqemu_format\tvirtual_size\tsha256_of_raw_view\tnotes\n";

    #[test]
    fn loads_rows_and_rejects_bad_ones() {
        let sha = "AB".repeat(32);
        let dir = dir_with(
            "ok",
            &format!("{HEAD}a.raw\traw\t512\t{sha}\t\n\nb.qcow2\tqcow2\t-\t-\ttruncated file\n"),
        );
        let set = Fixtures::load(&dir).unwrap();
        assert_eq!(set.entries().len(), 2);
        let first = &set.entries()[0];
        assert_eq!(first.virtual_size, Some(512));
        assert_eq!(first.sha256.as_deref(), Some(sha.to_lowercase().as_str()));
        assert!(!first.must_fail() && set.entries()[1].must_fail());
        for (tag, body) in [
            ("header", "name\tformat\n".to_string()),
            ("columns", format!("{HEAD}a.raw\traw\t512\n")),
            ("sha", format!("{HEAD}a.raw\traw\t512\txyz\t\n")),
            ("size", format!("{HEAD}a.raw\traw\tbig\t-\t\n")),
            ("missing", format!("{HEAD}c.raw\traw\t512\t-\t\n")),
            (
                "twice",
                format!("{HEAD}a.raw\traw\t512\t-\t\na.raw\traw\t512\t-\t\n"),
            ),
            ("path", format!("{HEAD}../a.raw\traw\t512\t-\t\n")),
        ] {
            let dir = dir_with(tag, &body);
            assert!(Fixtures::load(&dir).is_err(), "{tag} was accepted");
            fs::remove_dir_all(dir).unwrap();
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn finds_the_workspace_root() {
        let root = workspace_root().unwrap();
        assert!(root.join("plugin-testkit").is_dir(), "{}", root.display());
    }
}

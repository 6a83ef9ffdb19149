//! What can be checked of the Nix files without Nix fetching nixpkgs: the
//! lock file's shape and pin, and that every nixpkgs attribute the flake
//! and the NixOS module use is one we verified against nixpkgs' sources.
//! (`nix-instantiate --parse` runs in `.ci/run`, as does the comparison of
//! the lock with the team's shared pin.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(e2e::repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn flake_lock_pins_nixpkgs_only() {
    let lock: Value = serde_json::from_str(&read("flake.lock")).expect("flake.lock is JSON");
    assert_eq!(lock["version"], 7);
    assert_eq!(lock["root"], "root");
    assert_eq!(
        lock["nodes"]["root"]["inputs"],
        serde_json::json!({"nixpkgs": "nixpkgs"})
    );
    assert_eq!(
        lock["nodes"].as_object().unwrap().len(),
        2,
        "one input only"
    );
    let locked = &lock["nodes"]["nixpkgs"]["locked"];
    assert_eq!(
        (
            locked["type"].as_str(),
            locked["owner"].as_str(),
            locked["repo"].as_str()
        ),
        (Some("github"), Some("NixOS"), Some("nixpkgs"))
    );
    let rev = locked["rev"].as_str().unwrap();
    assert!(
        rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
        "{rev}"
    );
    assert!(locked["narHash"].as_str().unwrap().starts_with("sha256-"));
    assert!(locked["lastModified"].is_u64());
    let original = &lock["nodes"]["nixpkgs"]["original"];
    assert_eq!(original["ref"], "nixos-25.11");
    assert!(
        read("flake.nix").contains(r#"inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";"#)
    );
}

/// `pkgs.a.b` references in a Nix file, minus the ones that are options or
/// functions of our own.
fn pkgs_attributes(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (index, _) in text.match_indices("pkgs.") {
        let before = text[..index].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue; // e.g. legacyPackages.
        }
        let rest = &text[index + "pkgs.".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        found.insert(path.trim_end_matches('.').to_owned());
    }
    found
}

#[test]
fn every_nixpkgs_attribute_used_was_verified() {
    let verified: BTreeSet<String> = read("nix/verified-attributes.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    for file in ["flake.nix", "nix/module.nix"] {
        for attribute in pkgs_attributes(&read(file)) {
            assert!(
                verified.contains(&attribute),
                "{file} uses pkgs.{attribute}, which nix/verified-attributes.txt does not list"
            );
        }
    }
}

#[test]
fn process_compose_yaml_and_runtime_files_are_in_the_flake_sources() {
    let flake = read("flake.nix");
    for path in [
        "./process-compose.yaml",
        "./caddy/Caddyfile",
        "./config/users.toml",
        "./Cargo.lock",
        "./README.md",
        "./scripts",
    ] {
        assert!(flake.contains(path), "flake.nix does not include {path}");
    }
}

// ------------------------------------------------------------ flake.nix text

/// The items of the list `name = [ … ]` in `nix` (a Nix file, or a TOML
/// one), `#` comments dropped, split on whitespace.
fn nix_list(nix: &str, name: &str) -> Vec<String> {
    let open = format!("{name} = [");
    let start = nix
        .find(&open)
        .unwrap_or_else(|| panic!("no `{open}` in the file"))
        + open.len();
    let mut depth = 1;
    let mut end = start;
    for (offset, c) in nix[start..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            end = start + offset;
            break;
        }
    }
    nix[start..end]
        .lines()
        .map(|line| line.split('#').next().unwrap())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// The paths of a list of plain paths: `./x` or `(fs.maybeMissing ./x)`,
/// as relative paths (`x`). Anything else fails: the list is read here.
fn nix_paths(nix: &str, name: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut items = nix_list(nix, name).into_iter();
    while let Some(item) = items.next() {
        let path = if item == "(fs.maybeMissing" {
            items
                .next()
                .unwrap_or_default()
                .trim_end_matches(')')
                .to_owned()
        } else {
            item
        };
        let relative = path.strip_prefix("./").unwrap_or_else(|| {
            panic!(
                "flake.nix: {name} holds {path:?}; keep it a list of plain paths \
                 (./x or (fs.maybeMissing ./x)): tests/tests/nix_flake.rs reads it"
            )
        });
        paths.push(relative.trim_end_matches('/').to_owned());
    }
    paths
}

/// The string literals of a Nix list (`[ "-p" "e2e" ]` → `["-p", "e2e"]`).
fn nix_strings(nix: &str, name: &str) -> Vec<String> {
    nix_list(nix, name)
        .into_iter()
        .map(|item| item.trim_matches('"').to_owned())
        .collect()
}

// ------------------------------------------------- the Nix source set builds

/// Files (relative to the repository) the flake's build source holds: the
/// files git tracks (a flake in a git checkout sees only those) under
/// `sourcePaths`, minus `sourceExcluded`. Outside a git checkout, every
/// file under `sourcePaths`.
fn nix_source_set(root: &Path) -> Vec<String> {
    let flake = read("flake.nix");
    let included = nix_paths(&flake, "sourcePaths");
    let excluded = nix_paths(&flake, "sourceExcluded");
    let under = |file: &str, paths: &[String]| {
        paths
            .iter()
            .any(|p| file == p || file.starts_with(&format!("{p}/")))
    };
    let tracked = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success());
    let candidates: Vec<String> = match tracked {
        Some(output) => String::from_utf8(output.stdout)
            .unwrap()
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut files = Vec::new();
            let mut pending: Vec<PathBuf> = included.iter().map(|p| root.join(p)).collect();
            while let Some(path) = pending.pop() {
                if path.is_dir() {
                    for entry in std::fs::read_dir(&path).unwrap() {
                        pending.push(entry.unwrap().path());
                    }
                } else if path.is_file() {
                    let relative = path.strip_prefix(root).unwrap();
                    files.push(relative.to_str().unwrap().to_owned());
                }
            }
            files
        }
    };
    for path in &included {
        assert!(
            root.join(path).exists(),
            "flake.nix: sourcePaths names ./{path}, which does not exist (a missing path fails the Nix evaluation)"
        );
    }
    candidates
        .into_iter()
        .filter(|f| under(f, &included) && !under(f, &excluded))
        .filter(|f| root.join(f).is_file()) // tracked, but deleted in the work tree
        .collect()
}

/// Copies `files` from `from` to `to`, keeping modification times so a
/// second run rebuilds nothing.
fn copy_files(from: &Path, to: &Path, files: &[String]) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    for file in files {
        let (source, target) = (from.join(file), to.join(file));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        let modified = std::fs::metadata(&source).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&target)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
}

/// `cargo`, without what `cargo test` set for this test process: a
/// dependency's build script that reads one (ring's reads
/// CARGO_MANIFEST_DIR) would rerun and have the suite rebuilt afterwards.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "CARGO_TARGET_DIR",
                "CARGO_BUILD_TARGET_DIR",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every cargo command of the flake runs on `src`, the fileset of
/// `sourcePaths` minus `sourceExcluded`. This copies exactly that set (the
/// git-tracked files under it) and runs cargo there, offline and locked as
/// Nix does: `cargo metadata` loads every workspace member's manifest (a
/// member left out of the set fails here), and `cargo check --workspace
/// --all-targets` reads every file any target of any package compiles:
/// sources, `include_str!`s, build scripts (all that `cargo build -p` of
/// each service, the check's `--workspace` build and the clippy check
/// read). `check` rather than `build`: it reads the same files, writes no
/// binary over the suite's own, and shares the suite's target directory
/// (the dependencies clippy already checked are not checked again).
#[test]
fn the_nix_source_set_builds() {
    let root = e2e::repo_root();
    let files = nix_source_set(&root);
    let target = e2e::binary_dir()
        .parent()
        .expect("the target directory")
        .to_owned();
    // Inside the target directory: a fixed place, so a second run of
    // unchanged sources checks nothing again.
    let copy = target.join("nix-source-set");
    copy_files(&root, &copy, &files);

    let metadata = run_ok(
        cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
                "--locked",
            ])
            .current_dir(&copy),
        "cargo metadata on the Nix source set",
    );
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(
        metadata["workspace_members"].as_array().unwrap().len(),
        nix_strings(&read("Cargo.toml"), "members").len(),
        "every workspace member of Cargo.toml is in the Nix source set"
    );
    run_ok(
        cargo()
            .args([
                "check",
                "--workspace",
                "--all-targets",
                "--offline",
                "--locked",
                "--quiet",
            ])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&copy),
        "cargo check --workspace --all-targets on the Nix source set",
    );
}

//! What can be checked of the Nix files without Nix fetching nixpkgs: the
//! lock file's shape and pin, that every nixpkgs attribute the flake and
//! the NixOS module use is one we verified against nixpkgs' sources, and
//! the defects a real `nix build` / `nix flake check` / NixOS deploy would
//! hit: a build source that lacks what cargo reads, a check that runs tests
//! its sandbox cannot pass, a check that ignores its supervisor's status,
//! module options that lose store references or resolve against `/`, and a
//! `rust-version` newer than the pinned compiler. (`nix-instantiate
//! --parse` runs in `.ci/run`, as does the comparison of the lock with the
//! team's shared pin.)

use std::collections::{BTreeMap, BTreeSet};
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
        // The suite reads the pinned tool versions at run time.
        "./tools.versions",
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

/// The text of the attribute set bound by `header` (which ends in `{`),
/// up to its closing brace.
fn nix_block<'a>(nix: &'a str, header: &str) -> &'a str {
    let start = nix
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in the Nix file"));
    let mut depth = 0;
    for (offset, c) in nix[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &nix[start..start + offset + 1];
                }
            }
            _ => {}
        }
    }
    panic!("`{header}` is not closed in the Nix file")
}

/// The string literals of a Nix list (`[ "-p" "e2e" ]` → `["-p", "e2e"]`).
fn nix_strings(nix: &str, name: &str) -> Vec<String> {
    nix_list(nix, name)
        .into_iter()
        .map(|item| item.trim_matches('"').to_owned())
        .collect()
}

/// `pkgs.x` items of a Nix list, as `x`.
fn nix_packages(nix: &str, name: &str) -> Vec<String> {
    nix_list(nix, name)
        .into_iter()
        .filter_map(|item| item.strip_prefix("pkgs.").map(str::to_owned))
        .collect()
}

fn workspace_check(flake: &str) -> &str {
    nix_block(
        flake,
        r#"workspace-tests = mkWorkspaceCheck "workspace-tests" {"#,
    )
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

// ----------------------------------- every test the Nix check runs can run

/// Programs a test or a script may run, and the nixpkgs attribute that
/// provides each (the ones the Nix files use are verified in
/// nix/verified-attributes.txt).
const PROVIDED_BY: &[(&str, &str)] = &[
    ("redis-server", "redis"),
    ("redis-cli", "redis"),
    ("redis-benchmark", "redis"),
    ("caddy", "caddy"),
    ("http", "httpie"),
    ("jq", "jq"),
    ("curl", "curl"),
    ("process-compose", "process-compose"),
    ("tmux", "tmux"),
    ("watchexec", "watchexec"),
    ("wrk", "wrk"),
    ("valgrind", "valgrind"),
    ("node", "nodejs"),
    ("npm", "nodejs"),
    ("chromium", "chromium"),
    ("git", "git"),
    ("cargo", "cargo"),
    ("rustc", "rustc"),
    ("cargo-clippy", "clippy"),
    ("rustfmt", "rustfmt"),
    ("rust-analyzer", "rust-analyzer"),
    ("cargo-nextest", "cargo-nextest"),
];

/// What a `buildRustPackage` check has on PATH without nativeCheckInputs
/// (stdenv's bash and coreutils, and the Rust toolchain).
const BUILD_ENVIRONMENT: &[&str] = &["bash", "sh", "kill", "cargo", "rustc"];

/// Programs the packages provide.
fn programs_of(packages: &[String]) -> BTreeSet<String> {
    for package in packages {
        assert!(
            PROVIDED_BY.iter().any(|(_, p)| p == package),
            "pkgs.{package}: say in nix_flake.rs's PROVIDED_BY which programs it provides"
        );
    }
    PROVIDED_BY
        .iter()
        .filter(|(_, p)| packages.iter().any(|x| x == p))
        .map(|(program, _)| (*program).to_owned())
        .collect()
}

/// Programs a shell script runs: the first word of each command (after
/// `|`, `;`, `&&`, `$(`, `if`, `then`, `exec`, assignments …) that is one
/// of [`PROVIDED_BY`]'s programs, minus those it only runs after checking
/// them with `command -v` (optional ones). Other words are taken for
/// builtins, functions or stdenv's tools.
fn script_programs(text: &str) -> BTreeSet<String> {
    let known: BTreeSet<&str> = PROVIDED_BY.iter().map(|(program, _)| *program).collect();
    let mut found = BTreeSet::new();
    let mut optional = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let mut segments = line.to_owned();
        for separator in ["$(", "<(", "`", "&&", "||", "|", ";", "(", "{", "!"] {
            segments = segments.replace(separator, "\n");
        }
        for segment in segments.lines() {
            let mut words = segment.split_whitespace().skip_while(|w| {
                [
                    "if", "then", "do", "else", "elif", "while", "until", "exec", "time",
                ]
                .contains(w)
                    || w.split_once('=').is_some_and(|(name, _)| {
                        !name.is_empty()
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            });
            match (words.next(), words.next()) {
                (Some("command"), Some("-v")) => optional.extend(words.next().map(str::to_owned)),
                (Some(word), _) if known.contains(word) => {
                    found.insert(word.to_owned());
                }
                _ => {}
            }
        }
    }
    &found - &optional
}

/// A Rust source file, with a copy in which comments and the contents of
/// string and char literals are blanked (same char offsets), so braces and
/// names are found in code only.
struct Source {
    path: PathBuf,
    text: Vec<char>,
    code: Vec<char>,
}

impl Source {
    fn load(path: &Path) -> Source {
        let text: Vec<char> = std::fs::read_to_string(path).unwrap().chars().collect();
        let mut code = text.clone();
        let n = text.len();
        let at = |i: usize| text.get(i).copied().unwrap_or('\0');
        let mut i = 0;
        while i < n {
            let c = text[i];
            let ident_before = i > 0 && (text[i - 1].is_alphanumeric() || text[i - 1] == '_');
            if c == '/' && at(i + 1) == '/' {
                while i < n && text[i] != '\n' {
                    code[i] = ' ';
                    i += 1;
                }
            } else if c == '/' && at(i + 1) == '*' {
                let mut depth = 0;
                loop {
                    if at(i) == '/' && at(i + 1) == '*' {
                        depth += 1;
                        code[i] = ' ';
                        code[i + 1] = ' ';
                        i += 2;
                    } else if at(i) == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        code[i] = ' ';
                        code[i + 1] = ' ';
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else if i >= n {
                        break;
                    } else {
                        if text[i] != '\n' {
                            code[i] = ' ';
                        }
                        i += 1;
                    }
                }
            } else if c == 'r' && !ident_before && (at(i + 1) == '"' || at(i + 1) == '#') {
                // raw string r"…" / r#"…"#
                let mut j = i + 1;
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                if at(j) != '"' {
                    i += 1;
                    continue;
                }
                j += 1;
                while j < n {
                    if text[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                        break;
                    }
                    code[j] = ' ';
                    j += 1;
                }
                i = j + 1 + hashes;
            } else if c == '"' {
                let mut j = i + 1;
                while j < n && text[j] != '"' {
                    if text[j] == '\\' {
                        code[j] = ' ';
                        j += 1;
                    }
                    if j < n {
                        code[j] = ' ';
                    }
                    j += 1;
                }
                i = j + 1;
            } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
                // a char literal; a lifetime has no closing quote
                let mut j = i + 1;
                while j < n && text[j] != '\'' {
                    if text[j] == '\\' {
                        code[j] = ' ';
                        j += 1;
                    }
                    code[j] = ' ';
                    j += 1;
                }
                i = j + 1;
            } else {
                i += 1;
            }
        }
        Source {
            path: path.to_owned(),
            text,
            code,
        }
    }

    /// Every `fn`: its name, whether it is a test, and its body's range.
    fn functions(&self) -> Vec<Function> {
        let code = &self.code;
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        let mut found = Vec::new();
        for i in 0..code.len().saturating_sub(3) {
            if !(code[i] == 'f' && code[i + 1] == 'n' && code[i + 2].is_whitespace())
                || (i > 0 && is_ident(code[i - 1]))
            {
                continue;
            }
            let mut j = i + 2;
            while j < code.len() && code[j].is_whitespace() {
                j += 1;
            }
            let name: String = code[j..].iter().take_while(|c| is_ident(**c)).collect();
            if name.is_empty() {
                continue;
            }
            // The body: the first `{` outside parentheses (a `;` first: no body).
            let mut parens = 0;
            let mut open = None;
            for (k, c) in code.iter().enumerate().skip(j) {
                match c {
                    '(' => parens += 1,
                    ')' => parens -= 1,
                    ';' if parens == 0 => break,
                    '{' if parens == 0 => {
                        open = Some(k);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(open) = open else { continue };
            let mut depth = 0;
            let mut close = open;
            for (k, c) in code.iter().enumerate().skip(open) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            // Attributes: the code between the previous item boundary and `fn`.
            let head_start = code[..i]
                .iter()
                .rposition(|c| matches!(c, '}' | ';' | '{'))
                .map_or(0, |p| p + 1);
            let head: String = code[head_start..i].iter().collect();
            found.push(Function {
                name,
                is_test: head.contains("#[test]") || head.contains("#[tokio::test"),
                body: open..close + 1,
            });
        }
        found
    }
}

struct Function {
    name: String,
    is_test: bool,
    body: std::ops::Range<usize>,
}

/// What one function's own body shows it needs.
#[derive(Default, Clone)]
struct Needs {
    /// Programs named by `require_program("x", …)` or `Command::new("x")`.
    programs: BTreeSet<String>,
    /// Scripts spawned as programs (`Command::new(….join("scripts/x"))`).
    spawned_scripts: BTreeSet<String>,
    /// Scripts run through `Command::new("bash")`.
    interpreted_scripts: BTreeSet<String>,
    /// Names of the functions it calls.
    calls: BTreeSet<String>,
    reads_compose_file: bool,
    spawns_bash: bool,
}

fn needs_of(source: &Source, function: &Function) -> Needs {
    let text = &source.text[function.body.clone()];
    let code = &source.code[function.body.clone()];
    // String literals: their quotes survive in `code`, their contents only
    // in `text`. (opening quote, value)
    let mut literals: Vec<(usize, String)> = Vec::new();
    let mut open = None;
    for (i, c) in code.iter().enumerate() {
        if *c == '"' {
            match open.take() {
                None => open = Some(i),
                Some(start) => literals.push((start, text[start + 1..i].iter().collect())),
            }
        }
    }
    let literal_at = |i: usize| {
        literals
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, v)| v.clone())
    };
    // Where `pattern` occurs in code (not in comments or literals): the
    // offset just after it.
    let occurrences = |pattern: &str| -> Vec<usize> {
        let pattern: Vec<char> = pattern.chars().collect();
        (0..code.len().saturating_sub(pattern.len()))
            .filter(|&i| code[i..i + pattern.len()] == pattern[..])
            .map(|i| i + pattern.len())
            .collect()
    };
    let next_token = |mut i: usize| {
        while i < code.len() && code[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut needs = Needs::default();
    for after in occurrences("require_program(") {
        needs.programs.extend(literal_at(next_token(after)));
    }
    for after in occurrences("Command::new(") {
        if let Some(program) = literal_at(next_token(after)) {
            needs.spawns_bash |= program == "bash" || program == "sh";
            needs.programs.insert(program);
            continue;
        }
        // The argument, up to its closing parenthesis.
        let mut depth = 1;
        let mut end = after;
        while end < code.len() && depth > 0 {
            match code[end] {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        for (at, value) in &literals {
            if (after..end).contains(at) && value.starts_with("scripts/") {
                needs.spawned_scripts.insert(value.clone());
            }
        }
    }
    for (_, value) in &literals {
        if needs.spawns_bash && value.starts_with("scripts/") {
            needs.interpreted_scripts.insert(value.clone());
        }
        needs.reads_compose_file |= value == "process-compose.yaml";
    }
    // Calls: a name followed by `(`, not a macro.
    let mut i = 0;
    while i < code.len() {
        if code[i].is_alphabetic() || code[i] == '_' {
            let start = i;
            while i < code.len() && (code[i].is_alphanumeric() || code[i] == '_') {
                i += 1;
            }
            if code.get(i) == Some(&'(') {
                needs.calls.insert(code[start..i].iter().collect());
            }
        } else {
            i += 1;
        }
    }
    needs
}

/// `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Workspace members: package name → directory, and the workspace
/// packages each one depends on (dependencies and dev-dependencies).
fn workspace_packages() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let root = e2e::repo_root();
    let mut manifests = BTreeMap::new();
    for member in nix_strings(&read("Cargo.toml"), "members") {
        let member = member.trim_end_matches(',').trim_matches('"').to_owned();
        let manifest = read(&format!("{member}/Cargo.toml"));
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{member}/Cargo.toml: no package name"))
            .to_owned();
        manifests.insert(name, (root.join(&member), manifest));
    }
    let names: BTreeSet<String> = manifests.keys().cloned().collect();
    manifests
        .into_iter()
        .map(|(name, (dir, manifest))| {
            let mut section = "";
            let mut dependencies = BTreeSet::new();
            for line in manifest.lines().map(str::trim) {
                if line.starts_with('[') {
                    section = line;
                } else if section == "[dependencies]" || section == "[dev-dependencies]" {
                    let key = line.split(['.', '=', ' ']).next().unwrap_or_default();
                    if names.contains(key) && key != name {
                        dependencies.insert(key.to_owned());
                    }
                }
            }
            (name, (dir, dependencies))
        })
        .collect()
}

/// A problem that keeps a test from running in the Nix build sandbox.
fn sandbox_problems(flake: &str) -> Vec<String> {
    let check = workspace_check(flake);
    let flags = nix_strings(check, "checkFlags");
    let skipped: Vec<&String> = flags
        .iter()
        .zip(flags.iter().skip(1))
        .filter(|(flag, _)| *flag == "--skip")
        .map(|(_, pattern)| pattern)
        .collect();
    let available = programs_of(&nix_packages(check, "nativeCheckInputs"));
    let test_flags = nix_strings(check, "cargoTestFlags");
    let tested: Vec<&String> = test_flags
        .iter()
        .zip(test_flags.iter().skip(1))
        .filter(|(flag, _)| *flag == "-p")
        .map(|(_, package)| package)
        .collect();
    assert!(
        !tested.is_empty(),
        "workspace-tests: no `-p` in cargoTestFlags"
    );

    let root = e2e::repo_root();
    let packages = workspace_packages();
    let compose_programs: BTreeSet<String> =
        e2e::compose::ComposeFile::load(&root.join("process-compose.yaml"), &|_| None)
            .processes()
            .iter()
            .flat_map(|p| {
                let mut programs = p.programs();
                if let Some(exec) = p.readiness.as_ref().and_then(|r| r.exec.as_ref()) {
                    programs.extend(exec.command.split_whitespace().next().map(str::to_owned));
                }
                programs
            })
            .filter(|p| PROVIDED_BY.iter().any(|(known, _)| known == p))
            .collect();

    let mut problems = Vec::new();
    for package in tested {
        let (dir, _) = &packages[package.as_str()];
        // Library code the package's tests can call: its own src/ and that
        // of the workspace packages it depends on, transitively.
        let mut libraries = BTreeSet::from([package.clone()]);
        let mut pending = vec![package.clone()];
        while let Some(next) = pending.pop() {
            for dependency in &packages[next.as_str()].1 {
                if libraries.insert(dependency.clone()) {
                    pending.push(dependency.clone());
                }
            }
        }
        let library_sources: Vec<Source> = libraries
            .iter()
            .flat_map(|name| rust_files(&packages[name.as_str()].0.join("src")))
            .map(|path| Source::load(&path))
            .collect();
        let mut test_files = rust_files(&dir.join("src"));
        test_files.extend(rust_files(&dir.join("tests")));
        for file in test_files {
            let own = Source::load(&file);
            let mut by_name: BTreeMap<String, Vec<Needs>> = BTreeMap::new();
            let mut tests = Vec::new();
            for source in library_sources
                .iter()
                .filter(|s| s.path != own.path)
                .chain([&own])
            {
                for function in source.functions() {
                    let needs = needs_of(source, &function);
                    if function.is_test && std::ptr::eq(source, &own) {
                        tests.push((function.name.clone(), needs.clone()));
                    }
                    by_name.entry(function.name).or_default().push(needs);
                }
            }
            for (test, direct) in tests {
                if skipped
                    .iter()
                    .any(|pattern| test.contains(pattern.as_str()))
                {
                    continue;
                }
                // Everything it calls, by name, transitively.
                let mut all = direct.clone();
                let mut seen = BTreeSet::new();
                let mut pending: Vec<String> = direct.calls.iter().cloned().collect();
                while let Some(name) = pending.pop() {
                    if !seen.insert(name.clone()) {
                        continue;
                    }
                    for needs in by_name.get(&name).into_iter().flatten() {
                        all.programs.extend(needs.programs.iter().cloned());
                        all.spawned_scripts
                            .extend(needs.spawned_scripts.iter().cloned());
                        all.interpreted_scripts
                            .extend(needs.interpreted_scripts.iter().cloned());
                        all.reads_compose_file |= needs.reads_compose_file;
                        all.spawns_bash |= needs.spawns_bash;
                        pending.extend(needs.calls.iter().cloned());
                    }
                }
                let place = format!(
                    "{} `{test}`",
                    file.strip_prefix(&root).unwrap_or(&file).display()
                );
                let mut programs = all.programs.clone();
                for script in &all.spawned_scripts {
                    let text = read(script);
                    let shebang = text.lines().next().unwrap_or_default();
                    if !shebang.starts_with("#!/bin/sh") {
                        problems.push(format!(
                            "{place} spawns {script} through its `{shebang}` line; the Linux \
                             build sandbox has only /bin/sh (no /usr/bin/env): run it with \
                             `bash {script}`, or skip the test in workspace-tests"
                        ));
                    }
                }
                for script in all.spawned_scripts.iter().chain(&all.interpreted_scripts) {
                    programs.extend(script_programs(&read(script)));
                }
                if all.reads_compose_file && all.spawns_bash {
                    programs.extend(compose_programs.iter().cloned());
                }
                for program in programs {
                    if BUILD_ENVIRONMENT.contains(&program.as_str()) || available.contains(&program)
                    {
                        continue;
                    }
                    match PROVIDED_BY.iter().find(|(p, _)| *p == program) {
                        Some((_, package)) => problems.push(format!(
                            "{place} needs `{program}`: add pkgs.{package} to workspace-tests' \
                             nativeCheckInputs, or skip the test there"
                        )),
                        None => problems.push(format!(
                            "{place} needs `{program}`, which neither the build environment nor \
                             a package of nix_flake.rs's PROVIDED_BY provides"
                        )),
                    }
                }
            }
        }
    }
    problems
}

/// Every test the `workspace-tests` check runs can run in the Nix build
/// sandbox. The rule, read from flake.nix and the test sources:
///
/// - the check runs every test (`#[test]`, `#[tokio::test]`) in `src/` and
///   `tests/` of the packages its `cargoTestFlags` name, except those whose
///   name contains a `--skip` pattern of its `checkFlags`;
/// - what a test needs is what its body, and every function it calls (by
///   name, in its file and in the `src/` of its package and the workspace
///   packages that one depends on), names: a program in
///   `require_program("x", …)` or `Command::new("x")`; a script
///   `"scripts/…"` spawned by `Command::new(…)`, which must start with
///   `#!/bin/sh` (the Linux sandbox has no `/usr/bin/env`), or run through
///   `Command::new("bash")`; the programs those scripts run
///   ([`script_programs`]); and, for a test that reads process-compose.yaml
///   and runs `bash`, the programs of its commands and exec probes;
/// - each program must come from the build environment
///   ([`BUILD_ENVIRONMENT`]) or from a package of `nativeCheckInputs`
///   ([`PROVIDED_BY`] says which package provides which program).
///
/// It reads names, not types: a call may resolve to several functions of
/// the same name, which can only add needs.
#[test]
fn every_test_the_nix_check_runs_can_run_in_the_sandbox() {
    let problems = sandbox_problems(&read("flake.nix"));
    assert!(
        problems.is_empty(),
        "tests the Nix check `workspace-tests` runs but cannot pass in its sandbox:\n  {}",
        problems.join("\n  ")
    );
}

// ------------------------------------------------------------ the dev shell

/// README's dev loop runs in `nix develop`: the dev shell has every program
/// the scripts in scripts/ run (as [`script_programs`] finds them).
#[test]
fn the_dev_shell_has_every_program_the_scripts_run() {
    let flake = read("flake.nix");
    let shell = nix_block(&flake, "devShells.default = pkgs.mkShell {");
    let available = programs_of(&nix_packages(shell, "packages"));
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(e2e::repo_root().join("scripts"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    scripts.sort();
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        let name = script.file_name().unwrap().to_string_lossy();
        for program in script_programs(&text) {
            assert!(
                available.contains(&program),
                "scripts/{name} runs `{program}`, which the dev shell (flake.nix devShells.default) lacks"
            );
        }
    }
}

// ------------------------------------------------------------ NixOS module

/// `(name, block)` of every `name = mkOption { … }` of the module.
fn module_options(module: &str) -> Vec<(String, &str)> {
    module
        .match_indices("mkOption {")
        .map(|(at, _)| {
            let name = module[..at]
                .trim_end()
                .trim_end_matches('=')
                .trim_end()
                .rsplit(char::is_whitespace)
                .next()
                .unwrap()
                .to_owned();
            (name, nix_block(&module[at..], "mkOption {"))
        })
        .collect()
}

#[test]
fn every_module_option_has_a_description() {
    let module = read("nix/module.nix");
    let options = module_options(&module);
    assert!(options.len() > 10, "the module's options were not found");
    for (name, block) in options {
        assert!(
            block.contains("description ="),
            "nix/module.nix: option {name} has no description"
        );
    }
}

/// A path option made a string with `toString` loses its store reference:
/// the file is then not in the system closure (missing on a remote deploy,
/// gone after garbage collection). `"${cfg.x}"` keeps it.
#[test]
fn module_keeps_path_options_in_the_closure() {
    let module = read("nix/module.nix");
    for (name, block) in module_options(&module) {
        if block.contains("types.path") {
            assert!(
                !module.contains(&format!("toString cfg.{name}")),
                "nix/module.nix: `toString cfg.{name}` drops the store reference; write \"${{cfg.{name}}}\""
            );
        }
    }
}

/// Under systemd Caddy runs in `/`: a Caddyfile placeholder whose default
/// is a relative path (`{$DASHBOARD_DIR:dashboard/public}`) would resolve
/// there. The module sets each such variable, to a path in the store.
#[test]
fn module_sets_every_caddyfile_variable_whose_default_is_a_relative_path() {
    let caddyfile = read("caddy/Caddyfile");
    let module = read("nix/module.nix");
    let environment = nix_block(&module, "caddy.environment = {");
    let mut relative = 0;
    for placeholder in caddyfile.split("{$").skip(1) {
        let placeholder = placeholder.split('}').next().unwrap();
        let Some((name, default)) = placeholder.split_once(':') else {
            continue;
        };
        if !default.contains('/') || default.starts_with('/') {
            continue;
        }
        relative += 1;
        let value = environment
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| {
                panic!("nix/module.nix: caddy.environment does not set {name} (default {default:?} is relative to Caddy's working directory)")
            });
        assert!(
            value.starts_with("\"${../"),
            "nix/module.nix: {name} = {value}: use the store path of the repository's directory (\"${{../{default}}}\")"
        );
    }
    assert!(relative > 0, "no relative default found in the Caddyfile");
}

// ------------------------------------------------ the process-compose check

/// process-compose's `availability` keys (v1.85.0, src/types/process.go,
/// RestartPolicyConfig).
const AVAILABILITY_KEYS: &[&str] = &[
    "restart",
    "backoff_seconds",
    "max_restarts",
    "exit_on_end",
    "exit_on_skipped",
];

/// The flake's process-compose check: process-compose exits with the
/// walkthrough's status (`exit_on_end`; `exit_on_skipped`, so a dependency
/// that never becomes healthy ends the run at once with status 1 instead of
/// waiting out the timeout), and the check's script propagates it.
#[test]
fn the_process_compose_check_fails_when_the_walkthrough_does() {
    let flake = read("flake.nix");
    let start = flake
        .find("pkgs.runCommand \"process-compose-walkthrough\"")
        .expect("the process-compose check");
    let check = &flake[start..start + flake[start..].find("'';").unwrap()];

    let heredoc = check
        .split_once("<<'YAML'\n")
        .expect("walkthrough.yaml written by a <<'YAML' here-document")
        .1;
    let lines: Vec<&str> = heredoc.lines().take_while(|l| l.trim() != "YAML").collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap();
    let yaml: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or_default()))
        .collect();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("walkthrough.yaml");
    let processes = yaml["processes"].as_mapping().expect("processes");
    assert_eq!(processes.len(), 1, "one test process");
    let (name, walkthrough) = processes.iter().next().unwrap();
    let availability = walkthrough["availability"]
        .as_mapping()
        .expect("the test process has availability");
    for key in availability.keys() {
        let key = key.as_str().unwrap();
        assert!(
            AVAILABILITY_KEYS.contains(&key),
            "{name:?}: process-compose has no availability key {key:?}"
        );
    }
    for key in ["exit_on_end", "exit_on_skipped"] {
        assert_eq!(
            availability
                .get(key)
                .and_then(serde_yaml_ng::Value::as_bool),
            Some(true),
            "{name:?}: availability.{key} must be true"
        );
    }
    let stack: BTreeSet<String> =
        e2e::compose::ComposeFile::load(&e2e::repo_root().join("process-compose.yaml"), &|_| None)
            .processes()
            .into_iter()
            .map(|p| p.name)
            .collect();
    for dependency in walkthrough["depends_on"]
        .as_mapping()
        .expect("depends_on")
        .keys()
    {
        let dependency = dependency.as_str().unwrap();
        assert!(
            stack.contains(dependency),
            "{name:?} depends on {dependency:?}, which process-compose.yaml does not run"
        );
    }

    // The `process-compose up` command, with its continuation lines.
    let up_start = check
        .find("process-compose up")
        .expect("process-compose up");
    let mut up = String::new();
    for line in check[up_start..].lines() {
        up.push_str(line.trim());
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    assert!(
        !up.contains("||"),
        "the check must fail with process-compose's status, not ignore it: {up}"
    );
}

// ------------------------------------------------------------------ rustc

fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("{text:?} is not a version"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// The workspace's `rust-version` is no newer than the rustc of the pinned
/// nixpkgs (nix/verified-attributes.txt's `rustc` line records it, read in
/// nixpkgs' sources), so clippy's `incompatible_msrv` flags any std API that
/// compiler lacks; and no locked dependency needs a newer rustc than
/// `rust-version` (cargo checks that only when it resolves, not for an
/// existing Cargo.lock).
#[test]
fn rust_version_is_no_newer_than_the_pinned_rustc_and_every_dependency_builds_with_it() {
    let verified = read("nix/verified-attributes.txt");
    let rustc_line = verified
        .lines()
        .find(|l| l.split_whitespace().next() == Some("rustc"))
        .expect("a rustc line in nix/verified-attributes.txt");
    let pinned = rustc_line
        .split_once("builds version ")
        .map(|(_, rest)| rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap())
        .unwrap_or_else(|| {
            panic!("nix/verified-attributes.txt: the rustc line says which version the pinned nixpkgs `builds version X.Y.Z`")
        })
        .trim_end_matches('.');
    let manifest = read("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("workspace rust-version");
    assert!(
        version(msrv) <= version(pinned),
        "Cargo.toml: rust-version {msrv} is newer than the pinned nixpkgs' rustc {pinned}"
    );

    let metadata = run_ok(
        cargo()
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(e2e::repo_root()),
        "cargo metadata",
    );
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    for package in metadata["packages"].as_array().unwrap() {
        if let Some(needed) = package["rust_version"].as_str() {
            assert!(
                version(needed) <= version(msrv),
                "Cargo.lock: {} {} needs rustc {needed}, newer than rust-version {msrv}",
                package["name"],
                package["version"]
            );
        }
    }
}

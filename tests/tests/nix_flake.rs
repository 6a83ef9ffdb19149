//! What can be checked of the Nix files without Nix fetching nixpkgs: the
//! lock file's shape and pin, and that every nixpkgs attribute the flake
//! and the NixOS module use is one we verified against nixpkgs' sources.
//! (`nix-instantiate --parse` runs in `.ci/run`, as does the comparison of
//! the lock with the team's shared pin.)

use std::collections::BTreeSet;

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

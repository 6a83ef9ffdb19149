//! Before anything is booted: the service binaries of this profile and the
//! load tools.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::log;

/// Service binaries the stack runs from the directory of this executable.
const SERVICES: [&str; 4] = ["auth-api", "core-api", "psp-connector", "psp-sandbox"];

/// Builds the service binaries of this profile when run by cargo (a no-op
/// when they are fresh), and checks that they and the load tools exist.
pub fn check(root: &Path) -> anyhow::Result<()> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_services(&cargo, root)?;
    }
    let dir = e2e::binary_dir();
    for service in SERVICES {
        if !dir.join(service).is_file() {
            bail!(
                "{} missing: run `cargo build --release --workspace --bins` first",
                dir.join(service).display()
            );
        }
    }
    check_tools()
}

fn build_services(cargo: &std::ffi::OsStr, root: &Path) -> anyhow::Result<()> {
    // With this package in the set, features unify as for the bench's own
    // build, so the two builds do not keep rebuilding each other.
    let mut command = Command::new(cargo);
    // Without the variables `cargo run` sets for this program: build
    // scripts that watch them would make the nested build rebuild (and
    // relink this very binary).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
        .current_dir(root)
        .args(["build", "--release", "--bins", "-p", "bench"]);
    for service in SERVICES {
        command.args(["-p", service]);
    }
    log("building the service binaries (cargo build --release --bins -p bench -p auth-api …)");
    if !command.status()?.success() {
        bail!("building the service binaries failed");
    }
    Ok(())
}

fn check_tools() -> anyhow::Result<()> {
    for (tool, package) in [
        ("wrk", "wrk"),
        ("redis-benchmark", "redis-tools"),
        ("redis-server", "redis-server"),
        ("caddy", "caddy"),
        ("valgrind", "valgrind"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            bail!("`{tool}` is not on PATH: `apt-get install {package}` (or `nix develop`)");
        }
    }
    Ok(())
}

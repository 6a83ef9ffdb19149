//! End-to-end harness: boots the platform exactly as `process-compose.yaml`
//! describes it — its commands, environment, dependency order and readiness
//! probes — on free ports, so the suite runs beside a dev stack and beside
//! itself. process-compose itself cannot be installed on our CI machines;
//! [`compose`] reads the file with the documented semantics we rely on and
//! refuses anything else, and [`stack`] plays the supervisor.

pub mod client;
pub mod compose;
pub mod stack;

use std::path::PathBuf;

/// The repository root (where process-compose.yaml lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory cargo put this build's binaries in (`target/debug`).
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

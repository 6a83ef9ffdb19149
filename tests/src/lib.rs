//! End-to-end harness: boots the platform with the real process-compose
//! (the version the pinned nixpkgs packages) on the repository's own
//! `process-compose.yaml`, on free ports, so the suite runs beside a dev
//! stack and beside itself. [`stack`] boots and drives it, [`supervisor`]
//! talks to process-compose's REST API, [`compose`] reads the file for the
//! static checks, and [`client`] is the merchant side.

pub mod client;
pub mod compose;
pub mod stack;
pub mod supervisor;

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

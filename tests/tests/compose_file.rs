//! Static checks of the supervision and gateway files: what process-compose
//! and Caddy would refuse, or what would silently do nothing, fails here.

use std::collections::BTreeSet;
use std::process::Command;

use e2e::compose::ComposeFile;
use platform::config::FromEnv;

fn compose() -> ComposeFile {
    ComposeFile::load(&e2e::repo_root().join("process-compose.yaml"), &|_| None)
}

/// Programs a command may run besides the workspace's own binaries.
const EXTERNAL_PROGRAMS: &[&str] = &["redis-server", "caddy", "mkdir", "chmod", "umask"];
const WORKSPACE_BINARIES: &[&str] = &[
    "auth-api",
    "core-api",
    "psp-connector",
    "psp-sandbox",
    "webhook-dispatcher",
    "webhook-sink",
];

/// Variables each program reads.
fn reads(program: &str) -> BTreeSet<String> {
    let service: &[&str] = match program {
        "auth-api" => auth_api::Config::VARS,
        "core-api" => core_api::Config::VARS,
        "psp-connector" => psp_connector::Config::VARS,
        "psp-sandbox" => psp_sandbox::Config::VARS,
        "webhook-dispatcher" => webhook_dispatcher::Config::VARS,
        "webhook-sink" => webhook_dispatcher::sink::SinkConfig::VARS,
        "caddy" => {
            return caddyfile_variables()
                .into_iter()
                .chain(["XDG_CONFIG_HOME".into(), "XDG_DATA_HOME".into()])
                .collect();
        }
        _ => &[],
    };
    service
        .iter()
        .chain(platform::config::RuntimeConfig::VARS)
        .chain(platform::config::PROTOCOL_VARS)
        .map(|v| v.to_string())
        .collect()
}

/// `{$NAME}` / `{$NAME:default}` placeholders of the Caddyfile.
fn caddyfile_variables() -> BTreeSet<String> {
    let text = std::fs::read_to_string(e2e::repo_root().join("caddy/Caddyfile")).unwrap();
    text.split("{$")
        .skip(1)
        .map(|rest| rest.split(['}', ':']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_command_runs_a_binary_we_build_or_a_known_tool() {
    let bin_dir = e2e::binary_dir();
    for process in compose().processes() {
        let programs = process.programs();
        assert!(
            !programs.is_empty(),
            "{}: no program in {:?}",
            process.name,
            process.command
        );
        for program in programs {
            if WORKSPACE_BINARIES.contains(&program.as_str()) {
                assert!(
                    bin_dir.join(&program).is_file(),
                    "{}: runs {program}, which is not built in {} (run `cargo build --workspace`)",
                    process.name,
                    bin_dir.display()
                );
            } else {
                assert!(
                    EXTERNAL_PROGRAMS.contains(&program.as_str()),
                    "{}: runs {program:?}, neither a workspace binary nor a known tool",
                    process.name
                );
            }
        }
    }
}

#[test]
fn every_variable_set_is_read_by_someone() {
    let file = compose();
    let processes = file.processes();
    // Per process: what it sets for itself must be read by what it runs.
    for process in &processes {
        let readers: BTreeSet<String> = process.programs().iter().flat_map(|p| reads(p)).collect();
        let spec = &file.processes[&process.base_name];
        let own = spec
            .environment
            .iter()
            .map(|e| e.split('=').next().unwrap().to_owned());
        for variable in own.chain(process.inline_assignments()) {
            assert!(
                readers.contains(&variable),
                "{}: sets {variable}, which {:?} does not read",
                process.name,
                process.programs()
            );
        }
    }
    // Global: each entry must be read by at least one process.
    for entry in &file.environment {
        let variable = entry.split('=').next().unwrap();
        let read = processes.iter().any(|p| {
            p.programs()
                .iter()
                .any(|program| reads(program).contains(variable))
        });
        assert!(
            read,
            "global environment sets {variable}, which no process reads"
        );
    }
}

#[test]
fn supervision_policy_is_complete() {
    let file = compose();
    assert!(!file.processes.is_empty());
    let namespaces: BTreeSet<&str> = file
        .processes
        .values()
        .filter_map(|p| p.namespace.as_deref())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["infra", "services", "sandbox"]));
    for (name, spec) in &file.processes {
        assert!(spec.readiness_probe.is_some(), "{name}: no readiness probe");
        let availability = spec
            .availability
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no availability"));
        assert_eq!(availability.restart, "on_failure", "{name}");
        assert!(
            availability.max_restarts.unwrap_or(0) > 0,
            "{name}: restarts must be capped"
        );
        assert!(
            availability.backoff_seconds.unwrap_or(0) > 0,
            "{name}: restarts need a backoff"
        );
        let shutdown = spec
            .shutdown
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no shutdown"));
        assert_eq!(shutdown.signal, Some(15), "{name}: SIGTERM");
        // Longer than the services' own drain (SHUTDOWN_TIMEOUT_SECS, 10 s).
        assert!(
            shutdown.timeout_seconds.unwrap_or(0)
                > platform::config::DEFAULT_SHUTDOWN_TIMEOUT.as_secs(),
            "{name}"
        );
    }
    assert_eq!(file.processes["core-api"].replicas, 2);
    assert_eq!(file.processes["psp-connector"].replicas, 2);
}

#[test]
fn dev_secrets_are_marked_dev_only() {
    let text = std::fs::read_to_string(e2e::repo_root().join("process-compose.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for secret in [
        "JWT_SECRET=",
        "CARD_ENCRYPTION_KEY=",
        "WEBHOOK_SINK_SECRET=",
        "WEBHOOK_DEV_SINK_SECRET=",
    ] {
        let line = lines
            .iter()
            .position(|l| l.contains(secret))
            .unwrap_or_else(|| panic!("{secret} in the global environment"));
        let context = lines[line.saturating_sub(3)..=line].join("\n");
        assert!(
            context.contains("DEV ONLY"),
            "the dev {secret} must be marked DEV ONLY:\n{context}"
        );
    }
}

#[test]
fn caddyfile_is_valid_and_formatted() {
    let caddy = e2e::supervisor::caddy();
    let path = e2e::repo_root().join("caddy/Caddyfile");
    let home = tempfile::tempdir().unwrap();
    let validate = Command::new(&caddy)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "caddy validate failed: {}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let formatted = Command::new(&caddy).arg("fmt").arg(&path).output().unwrap();
    assert!(formatted.status.success());
    let original = std::fs::read(&path).unwrap();
    assert!(
        formatted.stdout == original,
        "caddy fmt would change caddy/Caddyfile: run `caddy fmt --overwrite caddy/Caddyfile`"
    );
}

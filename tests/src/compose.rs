//! `process-compose.yaml` read as data, for the static checks of
//! `tests/tests/compose_file.rs` (every command runs a program we know,
//! every variable set is read by what it runs, supervision policy): what
//! process-compose's own `is_strict` cannot know. The stacks themselves run
//! under the real process-compose ([`crate::stack`]).
//!
//! Only the keys the project uses are modelled, each struct denies unknown
//! fields, and `is_strict: true` is required.
//!
//! Semantics reproduced (process-compose docs): `$VAR`/`${VAR}` expanded in
//! the whole file at load time and `$$` left as a literal `$` for the shell;
//! `replicas: N` becomes processes `name-0` … `name-(N-1)` with
//! `{{.PC_REPLICA_NUM}}` rendered in `command` and probe fields and
//! `PC_REPLICA_NUM`/`PC_PROC_NAME` in the environment; commands run as
//! `bash -c`; environment precedence OS < global < process.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    pub version: String,
    pub is_strict: bool,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub ordered_shutdown: bool,
    #[serde(default)]
    pub environment: Vec<String>,
    pub processes: BTreeMap<String, ProcessSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub command: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default = "one")]
    pub replicas: usize,
    #[serde(default)]
    pub environment: Vec<String>,
    #[serde(default)]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub availability: Option<Availability>,
    #[serde(default)]
    pub shutdown: Option<ShutdownSpec>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ProcessStarted,
    ProcessHealthy,
    ProcessCompletedSuccessfully,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[serde(default)]
    pub exec: Option<ExecProbe>,
    #[serde(default)]
    pub http_get: Option<HttpGetProbe>,
    #[serde(default)]
    pub initial_delay_seconds: u64,
    #[serde(default = "ten")]
    pub period_seconds: u64,
    #[serde(default = "one_u64")]
    pub timeout_seconds: u64,
    #[serde(default = "one_u64")]
    pub success_threshold: u64,
    #[serde(default = "three")]
    pub failure_threshold: u64,
}

fn ten() -> u64 {
    10
}
fn one_u64() -> u64 {
    1
}
fn three() -> u64 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecProbe {
    pub command: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGetProbe {
    pub host: String,
    /// A string, so that it can be templated (`"720{{.PC_REPLICA_NUM}}"`).
    pub port: String,
    pub path: String,
    #[serde(default)]
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    pub restart: String,
    #[serde(default)]
    pub backoff_seconds: Option<u64>,
    #[serde(default)]
    pub max_restarts: Option<u64>,
    #[serde(default)]
    pub exit_on_end: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSpec {
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// One process instance after replica expansion and templating.
#[derive(Debug, Clone)]
pub struct Process {
    pub name: String,
    /// The name in the file (`core-api` for `core-api-1`).
    pub base_name: String,
    pub replica: usize,
    pub command: String,
    pub working_dir: Option<String>,
    /// Global then process entries (later wins), plus `PC_*`.
    pub environment: Vec<(String, String)>,
    pub depends_on: BTreeMap<String, Condition>,
    pub readiness: Option<Probe>,
    pub shutdown_signal: i32,
    pub shutdown_timeout_secs: u64,
}

/// Expands `$VAR`, `${VAR}` (unset → empty) and `$$` → `$`, as
/// process-compose does to the whole file before parsing it.
pub fn expand_load_time(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
                // `${NAME:-default}`: the default when NAME is unset or empty.
                let (name, default) = inner.split_once(":-").unwrap_or((&inner, ""));
                let value = lookup(name).filter(|v| !v.is_empty());
                out.push_str(&value.unwrap_or_else(|| default.to_owned()));
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(&lookup(&name).unwrap_or_default());
            }
            _ => out.push('$'),
        }
    }
    out
}

fn render(template: &str, replica: usize, process: &str) -> String {
    let rendered = template.replace("{{.PC_REPLICA_NUM}}", &replica.to_string());
    assert!(
        !rendered.contains("{{"),
        "process {process}: template {template:?} uses more than {{{{.PC_REPLICA_NUM}}}}, which this harness does not model"
    );
    rendered
}

fn split_env(entry: &str) -> (String, String) {
    let (key, value) = entry
        .split_once('=')
        .unwrap_or_else(|| panic!("environment entry {entry:?} has no '='"));
    (key.to_owned(), value.to_owned())
}

impl ComposeFile {
    /// Reads and expands the file; `lookup` supplies load-time variables.
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let expanded = expand_load_time(&text, lookup);
        let file: ComposeFile = serde_yaml_ng::from_str(&expanded)
            .unwrap_or_else(|e| panic!("{} is not valid: {e}", path.display()));
        assert!(
            file.is_strict,
            "process-compose.yaml must set is_strict: true"
        );
        file
    }

    /// Every process instance, replicas expanded, with strict-mode checks:
    /// dependencies exist and `process_healthy` targets have a probe.
    pub fn processes(&self) -> Vec<Process> {
        let mut processes = Vec::new();
        for (base_name, spec) in &self.processes {
            for replica in 0..spec.replicas {
                let name = if spec.replicas > 1 {
                    let width = spec.replicas.to_string().len();
                    format!("{base_name}-{replica:0width$}")
                } else {
                    base_name.clone()
                };
                let mut environment: Vec<(String, String)> = vec![
                    ("PC_PROC_NAME".into(), base_name.clone()),
                    ("PC_REPLICA_NUM".into(), replica.to_string()),
                ];
                environment.extend(self.environment.iter().map(|e| split_env(e)));
                environment.extend(spec.environment.iter().map(|e| split_env(e)));
                let readiness = spec.readiness_probe.clone().map(|mut probe| {
                    if let Some(exec) = &mut probe.exec {
                        exec.command = render(&exec.command, replica, &name);
                    }
                    if let Some(http) = &mut probe.http_get {
                        http.port = render(&http.port, replica, &name);
                        http.host = render(&http.host, replica, &name);
                        http.path = render(&http.path, replica, &name);
                    }
                    assert!(
                        probe.exec.is_some() != probe.http_get.is_some(),
                        "process {name}: a probe needs exactly one of exec or http_get"
                    );
                    probe
                });
                let shutdown = spec.shutdown.clone().unwrap_or(ShutdownSpec {
                    signal: None,
                    timeout_seconds: None,
                });
                processes.push(Process {
                    name,
                    base_name: base_name.clone(),
                    replica,
                    command: render(&spec.command, replica, base_name),
                    working_dir: spec
                        .working_dir
                        .as_ref()
                        .map(|d| render(d, replica, base_name)),
                    environment,
                    depends_on: spec
                        .depends_on
                        .iter()
                        .map(|(k, v)| (k.clone(), v.condition))
                        .collect(),
                    readiness,
                    shutdown_signal: shutdown.signal.unwrap_or(15),
                    shutdown_timeout_secs: shutdown.timeout_seconds.unwrap_or(10),
                });
            }
        }
        for process in &processes {
            for (dependency, condition) in &process.depends_on {
                let target = processes.iter().find(|p| &p.name == dependency).unwrap_or_else(|| {
                    panic!("process {}: depends on {dependency}, which is not defined (replicas are name-N)", process.name)
                });
                if *condition == Condition::ProcessHealthy {
                    assert!(
                        target.readiness.is_some(),
                        "{dependency} has no readiness probe but {} waits for it to be healthy",
                        process.name
                    );
                }
            }
        }
        processes
    }
}

impl Process {
    /// The value of `variable` in this process's environment, if set.
    pub fn env(&self, variable: &str) -> Option<&str> {
        self.environment
            .iter()
            .rev()
            .find(|(k, _)| k == variable)
            .map(|(_, v)| v.as_str())
    }

    /// Programs the command runs (`a && exec b` → `[a, b]`), skipping
    /// leading `NAME=value` assignments and `exec`.
    pub fn programs(&self) -> Vec<String> {
        self.command
            .split("&&")
            .filter_map(|segment| {
                segment
                    .split_whitespace()
                    .find(|word| *word != "exec" && !is_assignment(word))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// `NAME=value` assignments written inline in the command.
    pub fn inline_assignments(&self) -> Vec<String> {
        self.command
            .split("&&")
            .flat_map(|segment| {
                segment
                    .split_whitespace()
                    .take_while(|word| *word == "exec" || is_assignment(word))
                    .filter(|word| is_assignment(word))
                    .map(|word| word.split('=').next().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_time_expansion() {
        let lookup = |name: &str| (name == "HOME").then(|| "/h".to_owned());
        assert_eq!(
            expand_load_time(
                "a $HOME ${HOME} $$HOME $${X:-1} $UNSET ${UNSET:-7} ${HOME:-7}.",
                &lookup
            ),
            "a /h /h $HOME ${X:-1}  7 /h."
        );
    }
}

//! The sandbox configuration: a serde type that a run config embeds as its
//! `[sandbox]` table. Unknown keys are errors (`deny_unknown_fields`), so a typo
//! in a protection name fails loudly instead of silently weakening isolation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::job::Limits;

/// Settings of a [`crate::Sandbox`]. Every field has a default.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Concurrent jobs (pool slots). Each slot owns one warm interpreter and
    /// one pair of cgroups. Default: the number of CPUs.
    pub workers: usize,
    /// `warm` runs each test in a fork of the slot's supervisor, which has
    /// the harness imported (a zygote); `cold` has that fork exec a fresh
    /// interpreter for each test. Isolation is the same in both.
    pub mode: Mode,
    /// Where per-job work dirs are. Under /tmp, /var/tmp or /dev/shm (the
    /// default: the system temp dir) the dir is made inside the job's own
    /// fresh tmpfs and nothing is created on the host; elsewhere it is a host
    /// temp dir (tempfile) with a fresh tmpfs mounted on it for the job.
    pub work_root: Option<PathBuf>,
    /// First of the host uids the jobs map to (three per slot: supervisor,
    /// candidate, checker). Pick a range no real user owns. Default 200000.
    pub uid_base: u32,
    /// Size of each private tmpfs (work dir, /tmp, /var/tmp, /dev/shm), MiB. Default 64.
    pub tmpfs_mb: u64,
    /// Inodes of each private tmpfs (stops file-count bombs). Default 4096.
    pub tmpfs_inodes: u64,
    /// Memory the slot's own processes (cell root, supervisor, checker) need
    /// on top of the job's limit, MiB; they share the slot's memory cgroup
    /// with the job. Default 64.
    pub overhead_mb: u64,
    /// Processes of the slot's own (cell root, supervisor, checker) on top of
    /// the job's cap; they share the slot's pids cgroup with the job. Default 4.
    pub overhead_processes: u64,
    /// Python interpreter settings.
    pub python: PythonConfig,
    /// Which protections must be active (see `gradus sandbox doctor`).
    pub protections: Protections,
    /// Limits for jobs that do not set their own.
    pub limits: Limits,
    /// Truncate expected/got strings in reports to this many chars. Default 512.
    pub report_chars: usize,
    /// Sandbox services (`gradus sandbox serve`, SandboxFusion-compatible),
    /// each `http://HOST:PORT`, that a training run sends its jobs to,
    /// spread by free capacity. Empty (the default): the local pool only.
    pub endpoints: Vec<String>,
    /// The environment variable that holds the services' bearer key.
    pub api_key_env: Option<String>,
    /// With `endpoints`: whether the local pool takes jobs too. Default
    /// false (the trainer's machine runs no program of its own).
    pub local: bool,
    /// With `endpoints`: how long every host may be out before a job is
    /// given up as a `sandbox_error` (never scored). Default 600 s.
    pub give_up_s: f64,
    /// The cell launcher cold mode needs: a binary that calls
    /// [`crate::cell::main_if_requested`] first thing in `main` (`gradus`
    /// itself, or this crate's `gradus-sandbox-cell`); it becomes each slot's
    /// native supervisor. Set by the program, not by a run config. Unset, the
    /// running program is used when it called `main_if_requested`; warm mode
    /// does not use it.
    #[serde(skip)]
    pub launcher: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mode: Mode::Warm,
            work_root: None,
            uid_base: 200_000,
            tmpfs_mb: 64,
            tmpfs_inodes: 4096,
            overhead_mb: 64,
            overhead_processes: 4,
            python: PythonConfig::default(),
            protections: Protections::default(),
            limits: Limits::default(),
            report_chars: 512,
            endpoints: Vec::new(),
            api_key_env: None,
            local: false,
            give_up_s: 600.0,
            launcher: None,
        }
    }
}

/// How jobs get an interpreter.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each test runs in a fork of the slot's supervisor (harness imported).
    Warm,
    /// Each test runs in a freshly exec'd interpreter, confined the same
    /// way by a native supervisor ([`crate::cell`]; needs
    /// [`SandboxConfig::launcher`]).
    Cold,
}

/// The interpreter and its flags.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PythonConfig {
    /// A path or a name looked up on PATH. Shims (pyenv, asdf) are resolved to
    /// the real binary once, because a shell shim costs ~80 ms per start.
    pub interpreter: String,
    /// Interpreter flags, for jobs and for the bench's bare baseline alike.
    /// Default `["-S"]`: no `site` (a `.pth` file can cost ~40 ms per start);
    /// programs then see only the standard library.
    pub flags: Vec<String>,
}

impl Default for PythonConfig {
    fn default() -> Self {
        PythonConfig {
            interpreter: "python3".into(),
            flags: vec!["-S".into()],
        }
    }
}

/// Whether a protection must be active.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// A job refuses to run (sandbox_error) when it is missing.
    Required,
    /// Used when the machine has it; `doctor` says when it does not.
    Optional,
    /// Not applied.
    Off,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::Optional => "optional",
            Requirement::Off => "off",
        }
    }
}

macro_rules! protections {
    ($($(#[doc = $doc:literal])* $name:ident = $default:ident,)*) => {
        /// One requirement per protection. Names match `gradus sandbox doctor`.
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct Protections {
            $($(#[doc = $doc])* pub $name: Requirement,)*
        }

        impl Default for Protections {
            fn default() -> Self {
                Protections { $($name: Requirement::$default,)* }
            }
        }

        impl Protections {
            /// (name, requirement) for every protection, in the order applied.
            pub fn list(&self) -> Vec<(&'static str, Requirement)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// What each protection stops, for `doctor`.
            pub fn what(name: &str) -> &'static str {
                match name {
                    $(stringify!($name) => concat!($($doc),*),)*
                    _ => "",
                }
            }
        }
    };
}

protections! {
    /// Per-job pids cgroup: a process cap that binds root too (fork/thread bombs).
    pids_cgroup = Required,
    /// Per-job memory cgroup: memory bombs end in memory_limit, not host OOM.
    memory_cgroup = Optional,
    /// User namespace: job root is an unprivileged host uid (no /etc/shadow).
    user_ns = Required,
    /// Mount namespace: private mounts, invisible to the host.
    mount_ns = Required,
    /// Network namespace: no network but a private, down loopback.
    net_ns = Required,
    /// IPC namespace: no SysV IPC or POSIX queues shared with the host.
    ipc_ns = Required,
    /// PID namespace with a reaping init: host processes invisible, tree killed whole.
    pid_ns = Required,
    /// UTS namespace: hostname changes stay inside.
    uts_ns = Optional,
    /// Read-only, nosuid view of the host file system.
    readonly_root = Required,
    /// Private size-limited tmpfs on /tmp, /var/tmp and /dev/shm.
    private_tmp = Required,
    /// Fresh /proc for the PID namespace: other processes' environments hidden.
    proc = Optional,
    /// rlimits: CPU (soft < hard), address space, file size, open files, core 0, stack.
    rlimits = Required,
    /// Candidate and checker run as distinct ns uids without capabilities.
    uid_drop = Required,
    /// no_new_privs: exec cannot gain privileges (setuid files, file caps).
    no_new_privs = Required,
    /// Seccomp deny list: sockets but AF_UNIX, ptrace, mount, namespaces, bpf, io_uring, ...
    seccomp = Required,
}

/// A config that failed validation; every problem is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid sandbox config: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl SandboxConfig {
    /// Parse a `[sandbox]` table given as TOML-like JSON value or a JSON string.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let c: SandboxConfig =
            serde_json::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))?;
        c.validate()?;
        Ok(c)
    }

    /// Check ranges; report every problem, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if self.workers == 0 {
            errs.push("workers must be at least 1".to_string());
        }
        if self.tmpfs_mb == 0 {
            errs.push("tmpfs_mb must be at least 1".into());
        }
        if self.uid_base == 0 {
            errs.push("uid_base must not be 0 (that is host root)".into());
        }
        if self.python.interpreter.is_empty() {
            errs.push("python.interpreter must not be empty".into());
        }
        errs.extend(self.limits.problems("limits"));
        for (i, e) in self.endpoints.iter().enumerate() {
            if let Err(why) = parse_endpoint(e) {
                errs.push(format!("endpoints[{i}]: {why}"));
            }
        }
        if !(self.give_up_s.is_finite() && self.give_up_s > 0.0) {
            errs.push("give_up_s must be a positive number of seconds".into());
        }
        if self.api_key_env.as_deref().is_some_and(str::is_empty) {
            errs.push("api_key_env must name an environment variable".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errs))
        }
    }
}

/// The `HOST:PORT` of a service endpoint `http://HOST:PORT`, or why it is not one.
pub fn parse_endpoint(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!(
                "`{url}`: https is not supported; give the service's http address \
                 (behind a TLS proxy off its private network)"
            )
        } else {
            format!("`{url}`: an endpoint is `http://HOST:PORT`")
        }
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(format!(
            "`{url}`: an endpoint is `http://HOST:PORT`, no path"
        ));
    }
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(format!(
            "`{url}`: an endpoint needs a host and a port (`http://HOST:PORT`)"
        ));
    }
    Ok(authority.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_protection_is_an_error() {
        let err = SandboxConfig::from_json(r#"{"protections": {"secomp": "off"}}"#).unwrap_err();
        assert!(err.to_string().contains("secomp"), "{err}");
    }

    #[test]
    fn partial_table_keeps_defaults() {
        let c =
            SandboxConfig::from_json(r#"{"workers": 3, "protections": {"net_ns": "optional"}}"#)
                .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.protections.net_ns, Requirement::Optional);
        assert_eq!(c.protections.seccomp, Requirement::Required);
    }

    #[test]
    fn every_problem_is_reported() {
        let err = SandboxConfig::from_json(r#"{"workers": 0, "tmpfs_mb": 0}"#).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }
}

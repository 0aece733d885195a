//! Shared helpers for the sandbox's integration tests: a sandbox whose
//! required protections are checked up front (a missing one fails the test
//! loudly, naming it), job builders, and host-cleanliness checks.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use gradus_sandbox::job::{Compare, Job, JobLimits, Language, StdioCase, Tests};
use gradus_sandbox::{Mode, Outcome, Sandbox, SandboxConfig, Verdict};

/// Held while a test checks the host, and while a sandbox is built (its
/// probe job runs): host checks see every job of this binary, so one job at
/// a time.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Host uids of this test binary's sandbox: a range of its own, so that
/// sandboxes of other processes on the machine (a training run uses 200000
/// up) cannot confuse the host checks.
pub const UID_BASE: u32 = 290_000;
const WORKERS: usize = 2;

/// This test binary's work root: its own dir, so that work dirs of other
/// sandboxes on the machine cannot confuse the host checks. Dirs of test
/// processes that no longer exist are removed.
fn work_root() -> &'static std::path::Path {
    static W: OnceLock<std::path::PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("gradus-sandbox-tests-")
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("gradus-sandbox-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the tests' work root");
        dir
    })
}

/// The native cell supervisor cold mode runs (this crate's own launcher).
pub fn launcher() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_gradus-sandbox-cell"))
}

/// One sandbox for the whole test binary, with every protection required.
pub fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| build(Mode::Warm))
}

/// Like [`sandbox`], in cold mode (a fresh interpreter per test).
pub fn cold_sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| build(Mode::Cold))
}

fn build(mode: Mode) -> Sandbox {
    build_with(|c| c.mode = mode)
}

/// A sandbox of this binary's uids, every protection required, with `f`
/// applied to its config.
pub fn build_with(f: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    {
        // `doctor` runs a probe job: not while another test checks the host.
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let mut cfg = SandboxConfig {
            workers: WORKERS,
            uid_base: UID_BASE,
            work_root: Some(work_root().to_path_buf()),
            launcher: Some(launcher()),
            ..SandboxConfig::default()
        };
        f(&mut cfg);
        cfg.protections.memory_cgroup = gradus_sandbox::Requirement::Required;
        cfg.protections.proc = gradus_sandbox::Requirement::Required;
        let s = Sandbox::new(cfg).expect("building the sandbox");
        let missing: Vec<String> = s
            .doctor()
            .into_iter()
            .filter(|p| p.requirement == gradus_sandbox::Requirement::Required && !p.active())
            .map(|p| format!("{} ({})", p.name, p.state))
            .collect();
        assert!(
            missing.is_empty(),
            "protections these tests rely on are missing on this machine: {}",
            missing.join(", ")
        );
        s
    }
}

pub fn stdio(source: &str, cases: &[(&str, &str)]) -> Job {
    Job {
        id: "t".into(),
        language: Language::Python,
        source: source.into(),
        tests: Tests::Stdio {
            cases: cases
                .iter()
                .map(|(i, o)| StdioCase {
                    input: (*i).into(),
                    output: (*o).into(),
                })
                .collect(),
            compare: Compare::Exact,
        },
        limits: JobLimits::default(),
    }
}

pub fn function(source: &str, entry: &str, test: &str) -> Job {
    Job {
        id: "t".into(),
        language: Language::Python,
        source: source.into(),
        tests: Tests::Function {
            entry_point: entry.into(),
            test: test.into(),
            prelude: String::new(),
        },
        limits: JobLimits::default(),
    }
}

/// [`function`] whose test relies on helpers the job's `prelude` defines.
pub fn function_with_prelude(source: &str, entry: &str, test: &str, prelude: &str) -> Job {
    let mut job = function(source, entry, test);
    if let Tests::Function { prelude: p, .. } = &mut job.tests {
        *p = prelude.into();
    }
    job
}

pub fn call(
    source: &str,
    name: &str,
    inputs: serde_json::Value,
    outputs: serde_json::Value,
) -> Job {
    Job {
        id: "t".into(),
        language: Language::Python,
        source: source.into(),
        tests: Tests::Call {
            fn_name: name.into(),
            inputs: serde_json::from_value(inputs).unwrap(),
            outputs: serde_json::from_value(outputs).unwrap(),
        },
        limits: JobLimits::default(),
    }
}

/// Host state that a job must not change: processes under this binary's
/// candidate and checker uids, listening sockets, entries of the temp dirs.
#[derive(Debug, PartialEq)]
pub struct HostState {
    sandbox_procs: Vec<String>,
    listeners: BTreeSet<String>,
    tmp: BTreeSet<String>,
}

/// Processes running as one of this binary's candidate or checker uids. The
/// supervisor uid of each slot (`UID_BASE + 3 * slot`) is left out: the
/// slot's cell (cell root and supervisor) lives as long as the sandbox.
fn sandbox_uid_processes() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next()?.parse::<u32>().ok());
        let range = UID_BASE..UID_BASE + 3 * WORKERS as u32;
        if uid.is_some_and(|u| range.contains(&u) && !(u - UID_BASE).is_multiple_of(3)) {
            out.push(format!("{name}: {}", status.lines().next().unwrap_or("")));
        }
    }
    out
}

/// Listening TCP and bound UDP sockets of this binary's sandbox uids in the
/// host's network namespace (a job that escaped its own would show up here).
/// Scoped to those uids: listeners of other processes on the machine (a
/// training run's metrics port, a parallel test's loopback listener) are not
/// the sandbox's doing.
fn listeners() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let range = UID_BASE..UID_BASE + 3 * WORKERS as u32;
    for f in [
        "/proc/net/tcp",
        "/proc/net/tcp6",
        "/proc/net/udp",
        "/proc/net/udp6",
    ] {
        if let Ok(t) = std::fs::read_to_string(f) {
            for l in t.lines().skip(1) {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // TCP state 0A is LISTEN; any bound UDP socket counts.
                let ours = cols
                    .get(7)
                    .and_then(|u| u.parse::<u32>().ok())
                    .is_some_and(|u| range.contains(&u));
                if cols.len() > 7 && (cols[3] == "0A" || f.contains("udp")) && ours {
                    out.insert(format!("{f} {}", cols[1]));
                }
            }
        }
    }
    out
}

fn tmp_entries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in [
        work_root().to_path_buf(),
        std::env::temp_dir(),
        "/var/tmp".into(),
        "/dev/shm".into(),
    ] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if d == work_root() || n.starts_with("pwned") {
                    out.insert(format!("{}/{n}", d.display()));
                }
            }
        }
    }
    out
}

impl HostState {
    pub fn now() -> HostState {
        HostState {
            sandbox_procs: sandbox_uid_processes(),
            listeners: listeners(),
            tmp: tmp_entries(),
        }
    }
}

/// Run `job`, assert its verdict, and assert the host is as clean as before:
/// no task left in the job cgroups, no process under a candidate or checker
/// uid, no new listening socket, no new file in the temp dirs.
pub fn expect(job: Job, verdict: Verdict) -> Outcome {
    expect_in(sandbox(), job, verdict)
}

/// [`expect`] in a given sandbox of this binary.
pub fn expect_in(sandbox: &Sandbox, job: Job, verdict: Verdict) -> Outcome {
    expect_via(sandbox, |j| sandbox.run_blocking(&j), job, verdict)
}

/// A service over [`sandbox`] on loopback, and a fleet with only that
/// service: jobs go through HTTP, `/v1/jobs`, as a training run's do.
#[cfg(feature = "service")]
pub fn http_fleet() -> &'static (tokio::runtime::Runtime, gradus_sandbox::service::Fleet) {
    use gradus_sandbox::service::{Endpoint, Fleet, FleetConfig, Service, ServiceConfig, server};
    static F: OnceLock<(tokio::runtime::Runtime, Fleet)> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fleet = rt.block_on(async {
            let service = Service::new(sandbox().clone(), ServiceConfig::for_workers(WORKERS));
            let (addr, _task) = server::bind(service, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            Fleet::new(
                None,
                vec![Endpoint::parse(&format!("http://{addr}")).unwrap()],
                FleetConfig::default(),
            )
        });
        (rt, fleet)
    })
}

/// [`expect`] through HTTP ([`http_fleet`]): the same verdict and the same
/// host checks as the local pool's.
#[cfg(feature = "service")]
pub fn expect_http(mut job: Job, verdict: Verdict) -> Outcome {
    // Each job its own id: the service remembers an id's first result.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    job.id = format!(
        "{}-{}",
        job.id,
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (rt, fleet) = http_fleet();
    let id = job.id.clone();
    let out = expect_via(sandbox(), |j| rt.block_on(fleet.run(j)), job, verdict);
    assert_eq!(out.id, id, "the fleet gives the caller's id back");
    out
}

/// Runs `job` with `run`, asserts its verdict, then that `sandbox` (the pool
/// `run` used) and the host are clean.
pub fn expect_via(
    sandbox: &Sandbox,
    run: impl FnOnce(Job) -> Outcome,
    job: Job,
    verdict: Verdict,
) -> Outcome {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let before = HostState::now();
    let out = run(job);
    assert_eq!(
        out.verdict,
        verdict,
        "outcome: {}",
        serde_json::to_string_pretty(&out).unwrap()
    );
    let after = HostState::now();
    assert_eq!(sandbox.job_tasks_left(), 0, "tasks left in the job cgroups");
    assert!(
        after.sandbox_procs.is_empty(),
        "processes left behind: {:?}",
        after.sandbox_procs
    );
    let new_listeners: Vec<_> = after.listeners.difference(&before.listeners).collect();
    assert!(
        new_listeners.is_empty(),
        "new listening sockets: {new_listeners:?}"
    );
    let new_files: Vec<_> = after.tmp.difference(&before.tmp).collect();
    assert!(new_files.is_empty(), "files left behind: {new_files:?}");
    out
}

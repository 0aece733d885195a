//! Cold mode against a bare start, paired: each round runs the bench job once
//! in cold sandboxes with more and more protections turned off, then once as
//! a bare `python FLAGS -c PROGRAM` subprocess, so that load drifting on a
//! shared machine falls on every column alike. Prints the program's CPU (its
//! rusage) and the wall time per job for each. A diagnostic, not a test:
//! `cargo run --release -p gradus-sandbox --example cold_paired -- [ROUNDS]`.

use std::time::Instant;

use gradus_sandbox::{Mode, Requirement, Sandbox, SandboxConfig, Verdict};

/// CPU of reaped children of this process, ms.
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 * 1e3 + v.tv_usec as f64 * 1e-3;
    t(r.ru_utime) + t(r.ru_stime)
}

const PER_CHILD: &[&str] = &["seccomp", "rlimits", "uid_drop", "no_new_privs"];
const CELL: &[&str] = &[
    "user_ns",
    "mount_ns",
    "readonly_root",
    "private_tmp",
    "proc",
    "pid_ns",
    "net_ns",
    "ipc_ns",
    "uts_ns",
    "memory_cgroup",
    "pids_cgroup",
];

fn main() {
    // This example is also the cell launcher of its sandboxes.
    gradus_sandbox::cell::main_if_requested();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let all_off: Vec<&str> = PER_CHILD.iter().chain(CELL).copied().collect();
    let columns: Vec<(&str, Vec<&str>)> = vec![
        ("cold", vec![]),
        ("cold, seccomp off", vec!["seccomp"]),
        ("cold, per-child steps off", PER_CHILD.to_vec()),
        ("cold, every protection off", all_off),
    ];
    let work = std::env::temp_dir().join(format!("gradus-cold-paired-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a work root");
    let sandboxes: Vec<Sandbox> = columns
        .iter()
        .map(|(_, off)| {
            let mut cfg = SandboxConfig {
                workers: 1,
                mode: Mode::Cold,
                work_root: Some(work.clone()),
                ..SandboxConfig::default()
            };
            let mut p = serde_json::to_value(&cfg.protections).expect("serializes");
            for name in off {
                p[*name] = serde_json::to_value(Requirement::Off).expect("serializes");
            }
            cfg.protections = serde_json::from_value(p).expect("known names");
            let s = Sandbox::new(cfg).expect("sandbox");
            s.warm_up().expect("cell");
            s
        })
        .collect();
    let python = sandboxes[0].interpreter().to_path_buf();
    let flags = SandboxConfig::default().python.flags;
    let mut cpu = vec![0.0; columns.len() + 1];
    let mut wall = vec![0.0; columns.len() + 1];
    for i in 0..rounds {
        let job = gradus_sandbox::bench::job(i);
        for (k, s) in sandboxes.iter().enumerate() {
            let t = Instant::now();
            let out = s.run_blocking(&job);
            wall[k] += t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(out.verdict, Verdict::Accepted, "{out:?}");
            cpu[k] += out.cases[0].cpu_ms;
        }
        let (t, c0) = (Instant::now(), children_cpu_ms());
        assert!(
            gradus_sandbox::bench::bare(&python, &flags, i),
            "bare run failed"
        );
        cpu[columns.len()] += children_cpu_ms() - c0;
        wall[columns.len()] += t.elapsed().as_secs_f64() * 1e3;
    }
    drop(sandboxes);
    let _ = std::fs::remove_dir_all(&work);
    let n = rounds as f64;
    let bare_wall = wall[columns.len()] / n;
    println!("{rounds} rounds; per job: program CPU ms, wall ms, wall / bare");
    for (k, name) in columns.iter().map(|(n, _)| *n).chain(["bare"]).enumerate() {
        println!(
            "{name:<28} {:>6.2} {:>7.2} {:>6.2}",
            cpu[k] / n,
            wall[k] / n,
            wall[k] / n / bare_wall
        );
    }
}

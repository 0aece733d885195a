//! CPU time per job, bare vs cold vs warm, split by process: where the time of
//! an isolated job goes beyond a bare start. A diagnostic for the benchmark's
//! figures, not a test:
//! `cargo run --release -p gradus-sandbox --example cpu_per_job -- [N] [OFF,...] [WAYS]`
//! where OFF names protections to turn off (e.g. `seccomp`, to see its cost)
//! and WAYS picks some of `cold,warm,bare` (all by default; one way alone
//! is handy under `perf record`).
//!
//! The supervisor's CPU comes from `/proc/<pid>/stat` (it lives as long as
//! the slot), the program's from the rusage the supervisor reaped it with, the
//! Rust side's and bare's from `getrusage`.

use gradus_sandbox::job::Job;
use gradus_sandbox::{Mode, Requirement, Sandbox, SandboxConfig, Verdict};

/// utime + stime of `pid`, ms.
fn cpu_ms(pid: i32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the supervisor is alive");
    let fields: Vec<&str> = s[s.rfind(')').expect("stat has a comm") + 2..]
        .split(' ')
        .collect();
    // Fields 14 and 15 of stat(5), in clock ticks (100 per second here).
    let tick = |i: usize| fields[i - 3].parse::<f64>().unwrap_or(0.0) * 10.0;
    tick(14) + tick(15)
}

fn rusage_ms(who: i32) -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 * 1e3 + v.tv_usec as f64 * 1e-3;
    t(r.ru_utime) + t(r.ru_stime)
}

fn job(i: usize) -> Job {
    let mut j = gradus_sandbox::bench::job(i);
    j.id = format!("cpu-{i}");
    j
}

/// The supervisor of the sandbox's only slot: the process in the slot's pids
/// cgroup whose parent is there too (the cell root).
fn supervisor(sandbox_seq: usize) -> i32 {
    let dir = format!(
        "/sys/fs/cgroup/pids/gradus-sandbox-{}-{sandbox_seq}-0/cgroup.procs",
        std::process::id()
    );
    let pids: Vec<i32> = std::fs::read_to_string(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let parent = |p: i32| -> Option<i32> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        s[s.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    *pids
        .iter()
        .find(|p| parent(**p).is_some_and(|pp| pids.contains(&pp)))
        .expect("a supervisor in the slot's cgroup")
}

fn main() {
    // This example is also the cell launcher of its cold-mode sandboxes.
    gradus_sandbox::cell::main_if_requested();
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let off: Vec<String> = args
        .next()
        .map(|a| a.split(',').map(String::from).collect())
        .unwrap_or_default();
    let ways = args.next().unwrap_or_else(|| "cold,warm,bare".into());
    let modes = [Mode::Cold, Mode::Warm]
        .into_iter()
        .filter(|m| ways.contains(&format!("{m:?}").to_lowercase()));
    for (seq, mode) in modes.enumerate() {
        let mut cfg = SandboxConfig {
            workers: 1,
            mode,
            ..SandboxConfig::default()
        };
        let mut p = serde_json::to_value(&cfg.protections).expect("protections serialize");
        for name in off.iter().filter(|s| !s.is_empty()) {
            p[name] = serde_json::to_value(Requirement::Off).expect("serializes");
        }
        cfg.protections = serde_json::from_value(p).expect("known protection names");
        let sandbox = Sandbox::new(cfg).expect("sandbox");
        sandbox.warm_up().expect("cell");
        let sup = supervisor(seq);
        let (sup0, rust0) = (cpu_ms(sup), rusage_ms(libc::RUSAGE_SELF));
        let mut program = 0.0;
        let start = std::time::Instant::now();
        for i in 0..n {
            let out = sandbox.run_blocking(&job(i));
            assert_eq!(out.verdict, Verdict::Accepted, "{out:?}");
            program += out.cases[0].cpu_ms;
        }
        let wall = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        let per = |x: f64| x / n as f64;
        println!(
            "{mode:?}: wall {wall:.2} ms/job; CPU ms/job: program {:.2}, supervisor {:.2}, rust {:.2}",
            per(program),
            per(cpu_ms(sup) - sup0),
            per(rusage_ms(libc::RUSAGE_SELF) - rust0)
        );
    }
    if !ways.contains("bare") {
        return;
    }
    let python = gradus_sandbox::python::resolve("python3").expect("python3");
    let (child0, rust0) = (
        rusage_ms(libc::RUSAGE_CHILDREN),
        rusage_ms(libc::RUSAGE_SELF),
    );
    let start = std::time::Instant::now();
    for i in 0..n {
        let flags = &SandboxConfig::default().python.flags;
        assert!(
            gradus_sandbox::bench::bare(&python, flags, i),
            "bare run failed"
        );
    }
    let wall = start.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!(
        "bare: wall {wall:.2} ms/job; CPU ms/job: program {:.2}, rust {:.2}",
        (rusage_ms(libc::RUSAGE_CHILDREN) - child0) / n as f64,
        (rusage_ms(libc::RUSAGE_SELF) - rust0) / n as f64
    );
}

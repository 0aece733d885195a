//! The seccomp deny list, compiled with seccompiler in the Rust process before
//! any fork. Each child installs it as the very last isolation step, after
//! `no_new_privs` (the native supervisor with `seccompiler::apply_filter`, the
//! Python one with `PR_SET_SECCOMP`).
//!
//! It is one program, not one per action: every program attached costs each
//! child a copy, a check and a translation by the kernel. A short hand-written
//! prefix gives `clone3` its ENOSYS and refuses x32 calls; seccompiler's deny
//! list (one action, EPERM) follows.
//!
//! Denied calls fail with EPERM rather than killing the process, so a program
//! that probes them gets an ordinary Python exception; `clone3` fails with
//! ENOSYS, which makes glibc fall back to `clone`, whose flags we can inspect
//! (clone3 passes them in memory, out of a filter's reach).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filters are not built for the {0} architecture")]
    Arch(&'static str),
    #[error("building the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
}

const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Calls denied outright, each with what it would allow.
const DENIED: &[(i64, &str)] = &[
    (
        libc::SYS_ptrace,
        "reading or steering other processes (the supervisor, the checker)",
    ),
    (
        libc::SYS_process_vm_readv,
        "reading another process's memory",
    ),
    (
        libc::SYS_process_vm_writev,
        "writing another process's memory",
    ),
    (libc::SYS_mount, "remounting the read-only view writable"),
    (libc::SYS_umount2, "uncovering what private mounts hide"),
    (
        libc::SYS_pivot_root,
        "changing the root under the supervisor",
    ),
    (libc::SYS_chroot, "confusing path-based checks"),
    (libc::SYS_fsopen, "the new mount API, same as mount"),
    (libc::SYS_fsmount, "the new mount API, same as mount"),
    (libc::SYS_fsconfig, "the new mount API, same as mount"),
    (libc::SYS_fspick, "the new mount API, same as mount"),
    (libc::SYS_move_mount, "the new mount API, same as mount"),
    (libc::SYS_open_tree, "the new mount API, same as mount"),
    (libc::SYS_mount_setattr, "clearing read-only flags"),
    (libc::SYS_unshare, "new namespaces with fresh capabilities"),
    (libc::SYS_setns, "joining other namespaces"),
    (libc::SYS_bpf, "kernel attack surface; tracing"),
    (
        libc::SYS_perf_event_open,
        "kernel attack surface; side channels",
    ),
    (
        libc::SYS_keyctl,
        "the kernel keyring, shared across namespaces",
    ),
    (
        libc::SYS_add_key,
        "the kernel keyring, shared across namespaces",
    ),
    (
        libc::SYS_request_key,
        "the kernel keyring, shared across namespaces",
    ),
    (libc::SYS_kexec_load, "replacing the kernel"),
    (libc::SYS_kexec_file_load, "replacing the kernel"),
    (libc::SYS_init_module, "loading kernel code"),
    (libc::SYS_finit_module, "loading kernel code"),
    (libc::SYS_delete_module, "unloading kernel code"),
    (libc::SYS_reboot, "rebooting"),
    (libc::SYS_swapon, "changing swap"),
    (libc::SYS_swapoff, "changing swap"),
    (
        libc::SYS_io_uring_setup,
        "io_uring: syscalls that bypass this filter",
    ),
    (
        libc::SYS_io_uring_enter,
        "io_uring: syscalls that bypass this filter",
    ),
    (
        libc::SYS_io_uring_register,
        "io_uring: syscalls that bypass this filter",
    ),
    (libc::SYS_userfaultfd, "stalling the kernel to win races"),
    (
        libc::SYS_open_by_handle_at,
        "opening files outside the mount view",
    ),
    (libc::SYS_name_to_handle_at, "preparing open_by_handle_at"),
    (libc::SYS_acct, "process accounting to a file"),
    (libc::SYS_quotactl, "quota control"),
    (libc::SYS_settimeofday, "changing the clock"),
    (libc::SYS_clock_settime, "changing the clock"),
    (libc::SYS_syslog, "reading the kernel log"),
    (libc::SYS_vhangup, "hanging up terminals"),
];

fn arch() -> Result<TargetArch, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        other => Err(SeccompError::Arch(other)),
    }
}

/// The filter programs to install, in order, each as raw `struct
/// sock_filter` bytes ready for `PR_SET_SECCOMP`: one, the prefix and the
/// deny list.
pub fn programs() -> Result<Vec<Vec<u8>>, SeccompError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    // Sockets of any family but AF_UNIX: no network, not even a namespace's loopback.
    let not_unix = || -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?])?])
    };
    rules.insert(libc::SYS_socket, not_unix()?);
    rules.insert(libc::SYS_socketpair, not_unix()?);
    // clone with any namespace flag: a child with fresh capabilities.
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        clone_rules.push(SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let deny: BpfProgram = deny.try_into()?;
    let mut prog = prefix(arch);
    prog.extend(deny);
    Ok(vec![to_bytes(prog)])
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;

/// Ahead of the deny list: on this machine's architecture, x32 calls
/// (x86_64 only) fail with EPERM and `clone3` with ENOSYS; anything else
/// goes on to the deny list (which refuses other architectures itself).
fn prefix(arch: TargetArch) -> BpfProgram {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
    // On x86_64 the x32 ABI reaches the same calls with bit 30 set in the
    // number, which no per-number rule matches: refuse all of them.
    const X32_BIT: u32 = 0x4000_0000;
    let x86 = arch == TargetArch::x86_64;
    let audit = if x86 {
        AUDIT_ARCH_X86_64
    } else {
        AUDIT_ARCH_AARCH64
    };
    let mut p = vec![
        stmt(BPF_LD_W_ABS, ARCH),
        // Another architecture: on to the deny list (jf is set below).
        jump(BPF_JEQ_K, audit, 0, 0),
        stmt(BPF_LD_W_ABS, NR),
    ];
    if x86 {
        p.push(jump(BPF_JSET_K, X32_BIT, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    p.push(jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    // From instruction 1, past the rest of the prefix.
    p[1].jf = (p.len() - 2) as u8;
    p
}

fn stmt(code: u16, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

fn to_bytes(prog: BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for f in prog {
        out.extend_from_slice(&f.code.to_ne_bytes());
        out.push(f.jt);
        out.push(f.jf);
        out.extend_from_slice(&f.k.to_ne_bytes());
    }
    out
}

/// The names and reasons of the denied calls, for `doctor`.
pub fn denied_summary() -> String {
    format!(
        "{} calls denied (EPERM), sockets other than AF_UNIX, clone with namespace flags; clone3 returns ENOSYS",
        DENIED.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_build_for_this_machine() {
        let progs = programs().unwrap();
        assert_eq!(progs.len(), 1);
        for p in &progs {
            assert!(!p.is_empty() && p.len() % 8 == 0);
        }
    }
}

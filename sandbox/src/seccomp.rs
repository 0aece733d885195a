//! The seccomp deny list, compiled with seccompiler in the Rust process before
//! any fork. The harness installs the programs in each child as the very last
//! isolation step (`PR_SET_SECCOMP` after `no_new_privs`).
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

/// The deny list (EPERM), then the clone3 program (ENOSYS), each as raw
/// `struct sock_filter` bytes ready for `PR_SET_SECCOMP`.
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
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let clone3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut out = vec![to_bytes(deny.try_into()?), to_bytes(clone3.try_into()?)];
    if arch == TargetArch::x86_64 {
        out.push(x32_program());
    }
    Ok(out)
}

/// On x86_64 the x32 ABI reaches the same calls with bit 30 set in the
/// number, which no per-number rule matches: refuse all of them.
fn x32_program() -> Vec<u8> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_BIT: u32 = 0x4000_0000;
    let ret_errno = 0x0005_0000 | libc::EPERM as u32;
    let prog: BpfProgram = vec![
        // A = seccomp_data.arch
        stmt(0x20, 4),
        // not x86_64: allow (the deny filter checks the arch itself)
        jump(0x15, AUDIT_ARCH_X86_64, 0, 3),
        // A = seccomp_data.nr
        stmt(0x20, 0),
        // nr & X32_BIT: EPERM
        jump(0x45, X32_BIT, 0, 1),
        stmt(0x06, ret_errno),
        stmt(0x06, 0x7fff_0000),
    ];
    to_bytes(prog)
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
        assert!(progs.len() >= 2);
        for p in &progs {
            assert!(!p.is_empty() && p.len() % 8 == 0);
        }
    }
}

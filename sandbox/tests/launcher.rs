//! The native cell supervisor (cold mode) at its edges: a sandbox without a
//! usable launcher refuses to build or fails its jobs as `sandbox_error`,
//! the launcher refuses to be run by hand or fed bad settings, and a failure
//! of ours inside the cell (a missing interpreter) is never a verdict about
//! the program.

mod common;

use std::io::{IoSlice, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use common::*;
use gradus_sandbox::cell::{ARG, PROTOCOL};
use gradus_sandbox::marshal::{Encoder, PyValue, decode};
use gradus_sandbox::{Mode, Sandbox, SandboxConfig, SandboxError, Verdict};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};

fn cold_config() -> SandboxConfig {
    SandboxConfig {
        workers: 1,
        mode: Mode::Cold,
        uid_base: UID_BASE,
        ..SandboxConfig::default()
    }
}

#[test]
fn cold_mode_without_a_launcher_is_refused_naming_what_is_missing() {
    // This test binary never called main_if_requested, so it cannot be its
    // own launcher.
    let err = Sandbox::new(cold_config()).err().expect("no launcher");
    assert!(matches!(err, SandboxError::NoLauncher), "{err}");
    assert!(err.to_string().contains("main_if_requested"), "{err}");
    let missing = std::path::PathBuf::from("/nonexistent/gradus-sandbox-cell");
    let err = Sandbox::new(SandboxConfig {
        launcher: Some(missing.clone()),
        ..cold_config()
    })
    .err()
    .expect("a missing launcher");
    assert!(
        matches!(&err, SandboxError::Launcher(p, _) if *p == missing),
        "{err}"
    );
    // Warm mode has its own (Python) supervisor and needs no launcher.
    let warm = Sandbox::new(SandboxConfig {
        mode: Mode::Warm,
        ..cold_config()
    });
    assert!(warm.is_ok());
}

#[test]
fn a_program_that_is_not_a_launcher_fails_the_job_as_sandbox_error() {
    let sandbox = Sandbox::new(SandboxConfig {
        launcher: Some("/bin/true".into()),
        ..cold_config()
    })
    .expect("/bin/true is an executable file");
    let out = sandbox.run_blocking(&stdio("print(1)", &[("", "1")]));
    assert_eq!(out.verdict, Verdict::SandboxError, "{out:?}");
    let detail = out.detail.unwrap_or_default();
    assert!(
        detail.contains("/bin/true") && detail.contains("main_if_requested"),
        "{detail}"
    );
}

#[test]
fn the_launcher_run_by_hand_refuses() {
    let out = Command::new(launcher())
        .args([ARG, PROTOCOL])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a control socket"), "{err}");
    let out = Command::new(launcher())
        .args([ARG, "protocol-0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("protocol-0"), "{err}");
    let out = Command::new(launcher()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Start the launcher on a fresh control socket, send it `settings` as the
/// cell settings, and return its answer.
fn answer_to(settings: &[u8]) -> Vec<u8> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let mut child = Command::new(launcher())
        .args([ARG, PROTOCOL])
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fd =
        nix::sys::memfd::memfd_create("settings", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(settings).unwrap();
    sendmsg::<()>(
        ours.as_raw_fd(),
        &[IoSlice::new(b"C")],
        &[ControlMessage::ScmRights(&[f.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = nix::unistd::read(&ours, &mut buf).unwrap();
    buf.truncate(n);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "the launcher exits after refusing");
    buf
}

#[test]
fn bad_cell_settings_are_refused_with_the_field_named() {
    for (settings, want) in [
        (b"garbage".to_vec(), "unreadable marshal data"),
        (
            {
                let mut e = Encoder::default();
                e.dict();
                e.str("python");
                e.str("python3");
                e.end_dict();
                e.buf
            },
            "field `python`: must be an absolute path",
        ),
    ] {
        let answer = answer_to(&settings);
        assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
        let rec = decode(&answer[1..]).unwrap();
        assert_eq!(rec.get("t").and_then(PyValue::as_str), Some("setup_error"));
        assert_eq!(
            rec.get("step").and_then(PyValue::as_str),
            Some("cell settings")
        );
        let msg = rec.get("msg").and_then(PyValue::as_str).unwrap_or("");
        assert!(msg.contains(want), "{msg}");
    }
}

#[test]
fn a_missing_interpreter_is_a_sandbox_error_not_a_verdict() {
    // An interpreter that exists when the sandbox is built and is gone by
    // the time a job runs: the exec in the cell fails, and that is ours.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let link = dir.path().join("python3");
    let real = gradus_sandbox::python::resolve("python3").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut cfg = cold_config();
    cfg.launcher = Some(launcher());
    cfg.python.interpreter = link.to_string_lossy().into_owned();
    let sandbox = Sandbox::new(cfg).unwrap();
    assert_eq!(sandbox.interpreter(), link);
    std::fs::remove_file(&link).unwrap();
    let out = sandbox.run_blocking(&stdio("print(1)", &[("", "1")]));
    assert_eq!(out.verdict, Verdict::SandboxError, "{out:?}");
    let detail = out.detail.clone().unwrap_or_default();
    assert!(detail.contains("execve"), "{detail}");
    assert!(out.cases.is_empty(), "no case is judged: {out:?}");
}

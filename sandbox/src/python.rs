//! Finding the real Python interpreter. `python3` on PATH is often a shell
//! shim (pyenv, asdf) that costs ~80 ms per start; we ask it once for
//! `sys.executable` and run that binary directly from then on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why no interpreter could be used.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("python interpreter `{0}` not found on PATH")]
    NotFound(String),
    #[error("running `{0}` to find the real interpreter: {1}")]
    Run(String, String),
    #[error("`{0}` is not Python 3 (it reported `{1}`)")]
    NotPython3(String, String),
    #[error("compiling the harness with `{0}`: {1}")]
    Harness(String, String),
}

fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolve `name` (a path or a name on PATH) to the real interpreter binary.
pub fn resolve(name: &str) -> Result<PathBuf, PythonError> {
    let found = on_path(name).ok_or_else(|| PythonError::NotFound(name.into()))?;
    let out = Command::new(&found)
        .args([
            "-S",
            "-c",
            "import sys; sys.stdout.write('%d %s' % (sys.version_info[0], sys.executable))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| PythonError::Run(found.display().to_string(), e.to_string()))?;
    if !out.status.success() {
        return Err(PythonError::Run(
            found.display().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.split_once(' ') {
        Some(("3", exe)) if !exe.is_empty() => Ok(PathBuf::from(exe)),
        _ => Err(PythonError::NotPython3(found.display().to_string(), text)),
    }
}

/// The harness module compiled by `python` (marshal of its code object, from
/// the import system's bytecode cache next to `dir/gradus_harness.py`) and
/// the interpreter's prefixes (`sys.prefix` and kin). The native supervisor
/// hands the code to each fresh interpreter of call and function tests, and
/// makes the prefixes reachable inside the cell. One interpreter start, when
/// a cold-mode sandbox is built.
pub fn harness_code(
    python: &Path,
    flags: &[String],
    env: &[(&str, &str)],
    dir: &Path,
) -> Result<(Vec<u8>, Vec<String>), PythonError> {
    let script = format!(
        "import sys, marshal; sys.path.insert(0, {:?}); import gradus_harness as h; \
         c = marshal.dumps(h.__spec__.loader.get_code('gradus_harness')); \
         sys.stdout.buffer.write(marshal.dumps((c, sorted({{sys.prefix, sys.base_prefix, sys.exec_prefix}}))))",
        dir.to_string_lossy()
    );
    let who = python.display().to_string();
    let out = Command::new(python)
        .args(flags)
        .arg("-c")
        .arg(script)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| PythonError::Harness(who.clone(), e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(PythonError::Harness(who, err));
    }
    use crate::marshal::PyValue;
    match crate::marshal::decode(&out.stdout) {
        Ok(PyValue::Tuple(v)) => match v.as_slice() {
            [PyValue::Bytes(code), PyValue::List(prefixes)] => Ok((
                code.clone(),
                prefixes
                    .iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect(),
            )),
            _ => Err(PythonError::Harness(who, "unexpected answer".into())),
        },
        Ok(_) => Err(PythonError::Harness(who, "unexpected answer".into())),
        Err(e) => Err(PythonError::Harness(who, e.to_string())),
    }
}

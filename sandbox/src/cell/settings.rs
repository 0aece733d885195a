//! What the native supervisor reads: the cell settings (once per cell) and
//! each job's request, both marshal dicts written by the slot (`worker`).
//! Every field is checked before anything is built from it; a missing or
//! mistyped one is refused with its name, and the slot reports a
//! `sandbox_error` rather than a verdict about the program.

use crate::config::Requirement;
use crate::marshal::{PyValue, decode};

/// A settings or request dict the supervisor refuses.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BadInput {
    #[error("unreadable marshal data: {0}")]
    Marshal(#[from] crate::marshal::DecodeError),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` must be {1}")]
    Type(&'static str, &'static str),
    #[error("field `{0}`: {1}")]
    Value(&'static str, String),
}

/// The cell's settings, fixed for the life of the slot.
#[derive(Debug, Clone)]
pub struct CellSettings {
    /// The interpreter binary (resolved by the slot) and its flags.
    pub python: String,
    pub flags: Vec<String>,
    /// The whole environment of every interpreter (an allow-list).
    pub env: Vec<(String, String)>,
    /// `cgroup.procs` files the cell root joins (pids, memory).
    pub cell_cgroups: Vec<String>,
    pub tmpfs_bytes: u64,
    pub tmpfs_inodes: u64,
    /// Host uid of ns uid 0; the candidate and checker get the next two.
    pub uid_base: u32,
    /// Seccomp programs (raw `sock_filter` arrays), installed in order.
    pub seccomp: Vec<Vec<u8>>,
    /// Requirement per protection name.
    pub protect: Vec<(String, Requirement)>,
    /// The harness module's code object (marshal), for call and function
    /// tests run by a fresh interpreter.
    pub harness: Vec<u8>,
    /// The interpreter's prefixes (`sys.prefix` and kin): dirs the cell makes
    /// reachable, read-only, when an ancestor is closed to other users.
    pub prefixes: Vec<String>,
}

/// The tests of one job as the supervisor runs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// One run of the program per input.
    Stdio { inputs: Vec<String> },
    /// One run calling `fn_name` on each input; `boot_args` is the marshal
    /// of the harness task's arguments (source, name, inputs).
    Call { inputs: usize, boot_args: Vec<u8> },
    /// HumanEval shape: candidate and checker; `boot_args` is the marshal of
    /// the source (the test code comes through its own pipe).
    Function { boot_args: Vec<u8> },
}

/// Limits of one job, in bytes and seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobLimits {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub memory: u64,
    pub output: u64,
    pub file_size: u64,
    pub open_files: u64,
    pub stack: u64,
    pub address_slack: u64,
}

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: Kind,
    pub source: String,
    pub limits: JobLimits,
    pub workdir: String,
}

fn get<'a>(d: &'a PyValue, k: &'static str) -> Result<&'a PyValue, BadInput> {
    if !matches!(d, PyValue::Dict(_)) {
        return Err(BadInput::Type("(top level)", "a dict"));
    }
    d.get(k).ok_or(BadInput::Missing(k))
}

fn string(d: &PyValue, k: &'static str) -> Result<String, BadInput> {
    get(d, k)?
        .as_str()
        .map(String::from)
        .ok_or(BadInput::Type(k, "a str"))
}

fn bytes(d: &PyValue, k: &'static str) -> Result<Vec<u8>, BadInput> {
    get(d, k)?
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or(BadInput::Type(k, "bytes"))
}

fn uint(d: &PyValue, k: &'static str) -> Result<u64, BadInput> {
    get(d, k)?
        .as_i64()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or(BadInput::Type(k, "a non-negative int"))
}

fn seconds(d: &PyValue, k: &'static str) -> Result<f64, BadInput> {
    get(d, k)?
        .as_f64()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or(BadInput::Type(k, "a positive number"))
}

fn items<'a>(d: &'a PyValue, k: &'static str) -> Result<&'a [PyValue], BadInput> {
    match get(d, k)? {
        PyValue::List(v) | PyValue::Tuple(v) => Ok(v),
        _ => Err(BadInput::Type(k, "a list")),
    }
}

fn strings(d: &PyValue, k: &'static str) -> Result<Vec<String>, BadInput> {
    items(d, k)?
        .iter()
        .map(|v| v.as_str().map(String::from))
        .collect::<Option<_>>()
        .ok_or(BadInput::Type(k, "a list of str"))
}

fn str_pairs(d: &PyValue, k: &'static str) -> Result<Vec<(String, String)>, BadInput> {
    match get(d, k)? {
        PyValue::Dict(kv) => kv
            .iter()
            .map(|(a, b)| Some((a.as_str()?.to_string(), b.as_str()?.to_string())))
            .collect::<Option<_>>()
            .ok_or(BadInput::Type(k, "a dict of str to str")),
        _ => Err(BadInput::Type(k, "a dict")),
    }
}

/// A string that must not hold NUL (it becomes a C string for `execve`).
fn no_nul(k: &'static str, s: &str) -> Result<(), BadInput> {
    if s.contains('\0') {
        return Err(BadInput::Value(k, "contains a NUL byte".into()));
    }
    Ok(())
}

impl CellSettings {
    /// Decode and check the settings the slot sent.
    pub fn parse(data: &[u8]) -> Result<CellSettings, BadInput> {
        let d = decode(data)?;
        let python = string(&d, "python")?;
        if !python.starts_with('/') {
            return Err(BadInput::Value(
                "python",
                format!("must be an absolute path, got {python:?}"),
            ));
        }
        let flags = strings(&d, "flags")?;
        let env = str_pairs(&d, "env")?;
        no_nul("python", &python)?;
        for f in &flags {
            no_nul("flags", f)?;
        }
        for (k, v) in &env {
            no_nul("env", k)?;
            no_nul("env", v)?;
            if k.is_empty() || k.contains('=') {
                return Err(BadInput::Value("env", format!("bad variable name {k:?}")));
            }
        }
        let seccomp = items(&d, "seccomp")?
            .iter()
            .map(|p| p.as_bytes().map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()
            .ok_or(BadInput::Type("seccomp", "a list of bytes"))?;
        if let Some(p) = seccomp
            .iter()
            .find(|p| p.is_empty() || p.len() % 8 != 0 || p.len() / 8 > u16::MAX as usize)
        {
            return Err(BadInput::Value(
                "seccomp",
                format!(
                    "a program of {} bytes is not a whole number of filter instructions",
                    p.len()
                ),
            ));
        }
        let protect = str_pairs(&d, "protect")?
            .into_iter()
            .map(|(name, req)| {
                let r = match req.as_str() {
                    "required" => Requirement::Required,
                    "optional" => Requirement::Optional,
                    "off" => Requirement::Off,
                    other => {
                        return Err(BadInput::Value(
                            "protect",
                            format!("{name}: unknown requirement {other:?}"),
                        ));
                    }
                };
                Ok((name, r))
            })
            .collect::<Result<_, _>>()?;
        let uid_base = u32::try_from(uint(&d, "uid_base")?)
            .ok()
            .filter(|u| *u > 0 && u.checked_add(2).is_some())
            .ok_or(BadInput::Value("uid_base", "out of range".into()))?;
        Ok(CellSettings {
            python,
            flags,
            env,
            cell_cgroups: strings(&d, "cell_cgroups")?,
            tmpfs_bytes: uint(&d, "tmpfs_bytes")?,
            tmpfs_inodes: uint(&d, "tmpfs_inodes")?,
            uid_base,
            seccomp,
            protect,
            harness: bytes(&d, "harness")?,
            prefixes: strings(&d, "prefixes")?,
        })
    }

    /// The requirement of protection `name` (off when not listed).
    pub fn want(&self, name: &str) -> Requirement {
        self.protect
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Requirement::Off, |(_, r)| *r)
    }
}

impl JobRequest {
    /// Decode and check one job request.
    pub fn parse(data: &[u8]) -> Result<JobRequest, BadInput> {
        let d = decode(data)?;
        let kind = match string(&d, "kind")?.as_str() {
            "stdio" => Kind::Stdio {
                inputs: strings(&d, "inputs")?,
            },
            "call" => Kind::Call {
                inputs: items(&d, "inputs")?.len(),
                boot_args: bytes(&d, "boot_args")?,
            },
            "function" => Kind::Function {
                boot_args: bytes(&d, "boot_args")?,
            },
            other => return Err(BadInput::Value("kind", format!("unknown kind {other:?}"))),
        };
        let l = get(&d, "limits")?;
        let limits = JobLimits {
            cpu_s: seconds(l, "cpu_s")?,
            wall_s: seconds(l, "wall_s")?,
            memory: uint(l, "memory")?,
            output: uint(l, "output")?,
            file_size: uint(l, "file_size")?,
            open_files: uint(l, "open_files")?,
            stack: uint(l, "stack")?,
            address_slack: uint(l, "address_slack")?,
        };
        let workdir = string(&d, "workdir")?;
        if !workdir.starts_with('/') || workdir.split('/').any(|p| p == "..") {
            return Err(BadInput::Value(
                "workdir",
                format!("must be an absolute path without `..`, got {workdir:?}"),
            ));
        }
        Ok(JobRequest {
            kind,
            source: string(&d, "source")?,
            limits,
            workdir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marshal::Encoder;

    fn limits(e: &mut Encoder, cpu: f64) {
        e.str("limits");
        e.dict();
        for (k, v) in [("cpu_s", cpu), ("wall_s", 2.0)] {
            e.str(k);
            e.float(v);
        }
        for k in [
            "memory",
            "output",
            "file_size",
            "open_files",
            "stack",
            "address_slack",
        ] {
            e.str(k);
            e.int(1 << 20);
        }
        e.end_dict();
    }

    fn request(kind: &str, workdir: &str, cpu: f64) -> Vec<u8> {
        let mut e = Encoder::default();
        e.dict();
        e.str("kind");
        e.str(kind);
        e.str("source");
        e.str("print(1)");
        e.str("inputs");
        e.list(1);
        e.str("");
        limits(&mut e, cpu);
        e.str("workdir");
        e.str(workdir);
        e.end_dict();
        e.buf
    }

    #[test]
    fn a_good_request_parses() {
        let r = JobRequest::parse(&request("stdio", "/tmp/w", 1.0)).unwrap();
        assert_eq!(
            r.kind,
            Kind::Stdio {
                inputs: vec![String::new()]
            }
        );
        assert_eq!(r.limits.memory, 1 << 20);
    }

    #[test]
    fn bad_requests_are_refused_naming_the_field() {
        assert_eq!(
            JobRequest::parse(&request("shell", "/tmp/w", 1.0)).unwrap_err(),
            BadInput::Value("kind", "unknown kind \"shell\"".into())
        );
        assert!(matches!(
            JobRequest::parse(&request("stdio", "tmp/w", 1.0)),
            Err(BadInput::Value("workdir", _))
        ));
        assert!(matches!(
            JobRequest::parse(&request("stdio", "/tmp/../etc", 1.0)),
            Err(BadInput::Value("workdir", _))
        ));
        assert_eq!(
            JobRequest::parse(&request("stdio", "/tmp/w", -1.0)).unwrap_err(),
            BadInput::Type("cpu_s", "a positive number")
        );
        // A call job needs the harness task's arguments.
        assert_eq!(
            JobRequest::parse(&request("call", "/tmp/w", 1.0)).unwrap_err(),
            BadInput::Missing("boot_args")
        );
        assert!(matches!(
            JobRequest::parse(b"garbage"),
            Err(BadInput::Marshal(_))
        ));
        let mut e = Encoder::default();
        e.list(0);
        assert_eq!(
            JobRequest::parse(&e.buf).unwrap_err(),
            BadInput::Type("(top level)", "a dict")
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let mut e = Encoder::default();
        e.dict();
        e.str("python");
        e.str("python3");
        e.end_dict();
        assert!(matches!(
            CellSettings::parse(&e.buf),
            Err(BadInput::Value("python", _))
        ));
        let mut e = Encoder::default();
        e.dict();
        e.str("python");
        e.str("/usr/bin/python3");
        e.end_dict();
        assert_eq!(
            CellSettings::parse(&e.buf).unwrap_err(),
            BadInput::Missing("flags")
        );
    }
}

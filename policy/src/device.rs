//! Device selection and the dedicated compute thread.
//!
//! burn 0.22 picks the backend from the device: `Device::flex()` is the pure
//! Rust CPU backend (multi-threaded and SIMD through the `rayon` and `simd`
//! features), `Device::libtorch_cuda(n)` CUDA through PyTorch's libtorch (the
//! `cuda` cargo feature) and `Device::cuda(n)` burn's own CUDA backend (the
//! `cubecl-cuda` feature, which needs an LLVM download at build time). The
//! device string comes from config (`[compute] device = "cpu"`).
//!
//! burn's CPU kernels run on the rayon pool that is current on the calling
//! thread, and a training step blocks for tens of milliseconds or more, so
//! burn work must never run on tokio's workers. [`ComputeThread`] owns one OS
//! thread with its own sized rayon pool; the learner and generator actors hand
//! it closures and await the results over a channel.

use std::sync::mpsc;
use std::thread::JoinHandle;

use burn::tensor::Device;

use crate::config::ComputeConfig;
use crate::error::{Error, Result};

/// A parsed device string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's flex CPU backend.
    Cpu,
    /// CUDA device with this index.
    Cuda(usize),
    /// libtorch on the CPU (the `cuda` feature's backend without a GPU: to
    /// check that build's code path on any machine).
    LibTorchCpu,
}

/// Parses `"cpu"`, `"cuda"` or `"cuda:N"`.
pub fn parse(spec: &str) -> Result<DeviceKind> {
    match spec {
        "cpu" | "flex" => Ok(DeviceKind::Cpu),
        "cuda" => Ok(DeviceKind::Cuda(0)),
        "libtorch" => Ok(DeviceKind::LibTorchCpu),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(DeviceKind::Cuda(n)),
            _ => Err(Error::Device(format!(
                "unknown device {spec:?}; expected \"cpu\", \"cuda\", \"cuda:N\" or \"libtorch\""
            ))),
        },
    }
}

/// The burn device for a config. CUDA needs the `cuda` cargo feature; without
/// it the error says so.
pub fn device(cfg: &ComputeConfig) -> Result<Device> {
    match parse(&cfg.device)? {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cubecl-cuda")]
        DeviceKind::Cuda(n) => Ok(Device::cuda(n)),
        // burn 0.22 marks its LibTorch backend deprecated in favour of cubecl's,
        // which this network cannot build (see the README's CUDA section).
        #[cfg(all(feature = "cuda", not(feature = "cubecl-cuda")))]
        #[allow(deprecated)]
        DeviceKind::Cuda(n) => {
            let seen = tch::Cuda::device_count().max(0) as usize;
            if n >= seen {
                return Err(Error::Device(format!(
                    "device {:?}: libtorch sees {seen} CUDA device(s){}",
                    cfg.device,
                    if seen == 0 {
                        " (no NVIDIA GPU or driver on this machine?)"
                    } else {
                        ""
                    }
                )));
            }
            Ok(Device::libtorch_cuda(n))
        }
        #[cfg(not(any(feature = "cuda", feature = "cubecl-cuda")))]
        DeviceKind::Cuda(_) => Err(Error::Device(format!(
            "device {:?} needs gradus built with `--features cuda`",
            cfg.device
        ))),
        #[cfg(feature = "cuda")]
        #[allow(deprecated)]
        DeviceKind::LibTorchCpu => Ok(Device::libtorch()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::LibTorchCpu => Err(Error::Device(
            "device \"libtorch\" needs gradus built with `--features cuda`".into(),
        )),
    }
}

#[cfg(test)]
thread_local! {
    /// Tests take the bias path on any backend, to compare it with the mask.
    pub(crate) static MASK_AS_BIAS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The learner's device for a config: [`device`] with autodiff, and burn's
/// balanced gradient checkpointing when `gradient_checkpointing` is set (the
/// learner's constructors keep an autodiff device as it is).
pub fn learner_device(cfg: &ComputeConfig) -> Result<Device> {
    let d = device(cfg)?.autodiff();
    Ok(if cfg.gradient_checkpointing {
        d.gradient_checkpointing()
    } else {
        d
    })
}

/// Whether burn's `attention` must get the padding mask as an additive bias
/// on `device`: burn-tch 0.22 hands burn's boolean mask (true = masked) to
/// torch's `scaled_dot_product_attention` as it is, where true means *attend*,
/// so a left-padded batch attends to exactly the wrong keys there (its
/// autodiff path composes attention from tensor ops and is right). A bias
/// takes burn-tch's composed fallback instead.
pub fn bool_attention_mask_inverted(device: &Device) -> bool {
    #[cfg(test)]
    if MASK_AS_BIAS.get() {
        return true;
    }
    #[cfg(feature = "cuda")]
    {
        matches!(
            device.as_dispatch(),
            burn::backend::DispatchDevice::LibTorch(_)
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

/// Tunes glibc's allocator for tensor work: freed blocks of up to 32 MiB are
/// kept for reuse (not returned to the kernel) and the heap is trimmed only
/// past 256 MiB free.
///
/// Every CPU tensor op allocates its output, and a training step frees and
/// reallocates the same few dozen 1–4 MiB buffers. With glibc's defaults
/// many of them come from fresh `mmap`s or trimmed heap, so each step
/// page-faults them in again, both threads contending on the kernel's
/// memory map: on the benchmark model that costs about a third of a step
/// (README, "Policy speed"). The cost is memory kept at its peak instead of
/// returned, which a long-running trainer reaches again every step anyway.
///
/// Process-wide, so the binary calls it once at start. Leaves the settings
/// alone (and returns false) when `GLIBC_TUNABLES` already sets malloc
/// tunables, or off glibc; returns whether the settings took.
pub fn tune_allocator() -> bool {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc.")) {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before the threads that allocate tensors start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One OS thread that runs burn work inside its own rayon pool.
///
/// Jobs run in submission order. Dropping the handle closes the queue and
/// joins the thread after the queued jobs finish.
pub struct ComputeThread {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl ComputeThread {
    /// Starts the thread `name` with a pool of `threads` workers (0 = one per core).
    pub fn spawn(name: &str, threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name({
                let name = name.to_string();
                move |i| format!("{name}-{i}")
            })
            .build()
            .map_err(|e| Error::Device(format!("rayon pool: {e}")))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                pool.install(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
            })
            .map_err(|e| Error::Device(format!("spawn compute thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues `f`; the receiver yields its result (or disconnects if `f` panicked).
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // The caller may have stopped waiting; nothing to do then.
            let _ = tx.send(f());
        });
        if let Some(q) = &self.tx {
            // A send error means the thread died; the caller sees a disconnect.
            let _ = q.send(job);
        }
        rx
    }

    /// Runs `f` on the compute thread and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.submit(f)
            .recv()
            .map_err(|_| Error::Device("compute job panicked or the thread is gone".into()))
    }
}

impl Drop for ComputeThread {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On glibc the settings take, unless the environment already sets
    /// malloc tunables (then they are left alone).
    #[test]
    fn allocator_tuning_takes_on_glibc() {
        let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc."));
        let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(tune_allocator(), glibc && !user_set);
    }

    #[test]
    fn parses_device_strings() {
        assert_eq!(parse("cpu").unwrap(), DeviceKind::Cpu);
        assert_eq!(parse("cuda:2").unwrap(), DeviceKind::Cuda(2));
        assert!(parse("tpu").is_err());
        assert_eq!(parse("libtorch").unwrap(), DeviceKind::LibTorchCpu);
        // Without the feature, the libtorch devices say which feature they need.
        #[cfg(not(feature = "cuda"))]
        for spec in ["cuda", "libtorch"] {
            let e = device(&ComputeConfig {
                device: spec.into(),
                threads: 0,
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("--features cuda"), "{spec}: {e}");
        }
        let cfg = ComputeConfig {
            device: "gpu".into(),
            threads: 0,
            ..Default::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("compute.device")
        );
    }

    #[test]
    fn compute_thread_runs_jobs_in_its_pool() {
        let t = ComputeThread::spawn("test-compute", 2).unwrap();
        let n = t.run(rayon::current_num_threads).unwrap();
        assert_eq!(n, 2);
        let name = t
            .run(|| std::thread::current().name().map(str::to_string))
            .unwrap();
        // rayon runs installed work on one of the pool's own workers.
        assert!(name.is_some_and(|n| n.starts_with("test-compute")));
    }
}

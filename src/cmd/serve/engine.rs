//! The compute side of `gradus serve`: one loop on the compute thread that
//! owns the model and a continuous batch ([`gradus_policy::decode::Decoder`]).
//!
//! Each turn of the loop takes every request that arrived since the last
//! turn (up to `max_batch` running sequences; the rest wait in arrival
//! order), prefills the new ones into the running batch, and decodes one
//! token for every sequence. A weight swap stops admitting, lets the running
//! sequences finish on the weights that started them (so a response comes
//! from one version, as its log-probs say), swaps, and admits again: no
//! request is dropped. HTTP handlers never touch the model; they send jobs
//! over a channel and await a oneshot answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use gradus_policy::Transformer;
use gradus_policy::decode::{Decoder, Finished, Request};
use gradus_policy::device::ComputeThread;
use tokio::sync::oneshot;

/// One HTTP request's sequences (its prompts × `n`).
pub struct Job {
    pub seqs: Vec<Request>,
    pub reply: oneshot::Sender<Result<Done, String>>,
}

/// A job's finished sequences, in the order they were submitted, and the
/// weight version that generated all of them.
pub struct Done {
    pub seqs: Vec<Finished>,
    pub version: String,
}

enum Cmd {
    Job(Job),
    Swap {
        model: Box<Transformer>,
        version: String,
        reply: oneshot::Sender<()>,
    },
}

/// Counters the loop keeps for `/metrics` and the queue limit.
#[derive(Default)]
pub struct Gauges {
    /// Jobs accepted and not yet answered (waiting or running).
    pub outstanding: AtomicUsize,
    /// Sequences decoding now.
    pub running: AtomicUsize,
    /// Sequences waiting to be admitted.
    pub waiting: AtomicUsize,
    /// Tokens generated since start.
    pub generated: AtomicU64,
}

/// The handlers' side of the loop.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Cmd>,
    pub gauges: Arc<Gauges>,
    version: Arc<std::sync::RwLock<String>>,
}

impl Engine {
    /// Starts the loop on `thread` around `model`, serving `version`.
    pub fn start(
        thread: &ComputeThread,
        model: Transformer,
        pad: u32,
        version: String,
        max_batch: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let gauges = Arc::new(Gauges::default());
        let shared_version = Arc::new(std::sync::RwLock::new(version.clone()));
        let state = Loop {
            rx,
            model,
            pad,
            version,
            shared_version: shared_version.clone(),
            max_batch,
            gauges: gauges.clone(),
            waiting: VecDeque::new(),
            jobs: HashMap::new(),
            owner: HashMap::new(),
            next_seq: 0,
            next_job: 0,
            swap: None,
        };
        // The loop runs until every handle (and so the sender) is dropped.
        drop(thread.submit(move || state.run()));
        Self {
            tx,
            gauges,
            version: shared_version,
        }
    }

    /// Queues a job; its answer comes on the job's reply channel.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        self.gauges.outstanding.fetch_add(1, Ordering::SeqCst);
        self.tx.send(Cmd::Job(job)).map_err(|_| {
            self.gauges.outstanding.fetch_sub(1, Ordering::SeqCst);
            "the compute loop has stopped".to_string()
        })
    }

    /// Swaps in `model` once the running sequences finish; resolves when the
    /// new weights serve.
    pub async fn swap(&self, model: Transformer, version: String) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Swap {
                model: Box::new(model),
                version,
                reply,
            })
            .map_err(|_| "the compute loop has stopped".to_string())?;
        rx.await
            .map_err(|_| "the compute loop stopped before the swap".to_string())
    }

    /// The weight version served now.
    pub fn version(&self) -> String {
        self.version
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Done, String>>,
    results: Vec<Option<Finished>>,
    left: usize,
}

struct Loop {
    rx: mpsc::Receiver<Cmd>,
    model: Transformer,
    pad: u32,
    version: String,
    shared_version: Arc<std::sync::RwLock<String>>,
    max_batch: usize,
    gauges: Arc<Gauges>,
    /// Jobs not yet admitted, in arrival order, each admitted whole (so
    /// every sequence of a job comes from the same weights).
    waiting: VecDeque<(u64, Vec<Request>)>,
    jobs: HashMap<u64, Pending>,
    /// Sequence id → (job, index in the job).
    owner: HashMap<u64, (u64, usize)>,
    next_seq: u64,
    next_job: u64,
    swap: Option<(Box<Transformer>, String, oneshot::Sender<()>)>,
}

impl Loop {
    fn run(mut self) {
        let mut decoder = Decoder::new(&self.model, self.pad);
        loop {
            // Idle: block for the next command; busy: take what has arrived.
            if decoder.running() == 0 && self.waiting.is_empty() && self.swap.is_none() {
                match self.rx.recv() {
                    Ok(cmd) => self.take(cmd),
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.take(cmd);
            }
            if decoder.running() == 0
                && let Some((model, version, reply)) = self.swap.take()
            {
                self.model = *model;
                self.version = version.clone();
                *self
                    .shared_version
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = version;
                decoder = Decoder::new(&self.model, self.pad);
                let _ = reply.send(());
            }
            if self.swap.is_none() {
                self.admit(&mut decoder);
            }
            if decoder.running() > 0 {
                let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    decoder.step(&self.model)
                }));
                match stepped {
                    Ok(Ok(done)) => {
                        self.gauges.generated.fetch_add(
                            decoder.running() as u64 + done.len() as u64,
                            Ordering::Relaxed,
                        );
                        for f in done {
                            self.finish(f);
                        }
                    }
                    Ok(Err(e)) => self.fail_running(&mut decoder, e.to_string()),
                    Err(_) => self.fail_running(&mut decoder, "decoding panicked".into()),
                }
            }
            self.gauges
                .running
                .store(decoder.running(), Ordering::Relaxed);
            self.gauges.waiting.store(
                self.waiting.iter().map(|(_, s)| s.len()).sum(),
                Ordering::Relaxed,
            );
        }
    }

    fn take(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Job(job) => {
                let id = self.next_job;
                self.next_job += 1;
                let n = job.seqs.len();
                self.jobs.insert(
                    id,
                    Pending {
                        reply: job.reply,
                        results: (0..n).map(|_| None).collect(),
                        left: n,
                    },
                );
                if n == 0 {
                    self.complete(id);
                } else {
                    self.waiting.push_back((id, job.seqs));
                }
            }
            Cmd::Swap {
                model,
                version,
                reply,
            } => {
                // A newer swap supersedes one not yet done; both callers hear
                // when the newest weights serve.
                if let Some((_, _, old)) = self.swap.take() {
                    let _ = old.send(());
                }
                self.swap = Some((model, version, reply));
            }
        }
    }

    /// Admits waiting jobs, whole and in order, while their sequences fit in
    /// `max_batch` (a job larger than that is admitted alone into an empty
    /// batch); a sequence the model cannot take fails its whole job.
    fn admit(&mut self, decoder: &mut Decoder) {
        let mut room = self.max_batch.saturating_sub(decoder.running());
        let mut batch = Vec::new();
        while let Some((_, seqs)) = self.waiting.front() {
            let alone = decoder.running() == 0 && batch.is_empty();
            if seqs.len() > room && !alone {
                break;
            }
            let (job, seqs) = self.waiting.pop_front().expect("front exists");
            room = room.saturating_sub(seqs.len());
            if let Some(e) = seqs
                .iter()
                .find_map(|r| Decoder::check(&self.model, r).err())
            {
                self.fail_job(job, e.to_string());
                continue;
            }
            for (i, mut req) in seqs.into_iter().enumerate() {
                req.id = self.next_seq;
                self.owner.insert(self.next_seq, (job, i));
                self.next_seq += 1;
                batch.push(req);
            }
        }
        if batch.is_empty() {
            return;
        }
        let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
        let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.admit(&self.model, batch)
        }));
        let why = match admitted {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "prefill panicked".into(),
        };
        for id in ids {
            if let Some((job, _)) = self.owner.remove(&id) {
                self.fail_job(job, why.clone());
            }
        }
    }

    fn finish(&mut self, f: Finished) {
        let Some((job, i)) = self.owner.remove(&f.id) else {
            return;
        };
        let Some(p) = self.jobs.get_mut(&job) else {
            return;
        };
        p.results[i] = Some(f);
        p.left -= 1;
        if p.left == 0 {
            self.complete(job);
        }
    }

    fn complete(&mut self, job: u64) {
        if let Some(p) = self.jobs.remove(&job) {
            self.gauges.outstanding.fetch_sub(1, Ordering::SeqCst);
            let _ = p.reply.send(Ok(Done {
                seqs: p.results.into_iter().flatten().collect(),
                version: self.version.clone(),
            }));
        }
    }

    fn fail_job(&mut self, job: u64, why: String) {
        if let Some(p) = self.jobs.remove(&job) {
            self.gauges.outstanding.fetch_sub(1, Ordering::SeqCst);
            let _ = p.reply.send(Err(why));
        }
    }

    /// A failed step: every running job fails, the batch starts over.
    fn fail_running(&mut self, decoder: &mut Decoder, why: String) {
        let jobs: Vec<u64> = self.owner.drain().map(|(_, (job, _))| job).collect();
        for job in jobs {
            self.fail_job(job, why.clone());
        }
        *decoder = Decoder::new(&self.model, self.pad);
    }
}

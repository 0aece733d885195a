//! AdamW with linear warmup and global-norm gradient clipping, plus the
//! parameter visitors that read and write a model's weights in a fixed order.
//!
//! Why not burn's `AdamWConfig`: its gradient clipping is per tensor (we need
//! the norm over all parameters, as `torch.nn.utils.clip_grad_norm_`), and its
//! state is keyed by random `ParamId`s, which makes exact resume from our own
//! checkpoints awkward. Here the state is a `Vec` in the module's visiting
//! order (field order, deterministic), which also makes checkpoints portable.

use std::sync::{Arc, Mutex};

use burn::Tensor;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};
use crate::fused::{self, AdamHyper, HostMoments};
use crate::model::Transformer;

/// One tensor on the host: shape and row-major f32 values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl HostTensor {
    pub(crate) fn of<const D: usize>(t: Tensor<D>) -> Self {
        Self {
            shape: t.dims().to_vec(),
            data: t
                .into_data()
                .try_into_vec::<f32>()
                .expect("weights are f32"),
        }
    }
}

/// All weights of a model in visiting order.
pub fn weights(model: &Transformer) -> Vec<HostTensor> {
    struct Collect(Vec<HostTensor>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(HostTensor::of(param.val()));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Replaces every weight of `model` with `values` (visiting order), keeping
/// parameter ids and gradient tracking. Shapes must match exactly.
pub fn load_weights(model: Transformer, values: &[HostTensor]) -> Result<Transformer> {
    let n = values.len();
    let model = map_weights(model, |i, _| match values.get(i) {
        Some(v) => Ok(v.clone()),
        None => Err(Error::Mismatch(format!(
            "model has more than {n} weight tensors"
        ))),
    })?;
    match model {
        (m, count) if count == n => Ok(m),
        (_, count) => Err(Error::Mismatch(format!(
            "checkpoint has {n} weight tensors, the model {count}"
        ))),
    }
}

/// Replaces weight `i` of `model` (visiting order) with what `source(i,
/// shape)` gives, one at a time (so a large model is never held twice on
/// the host), keeping parameter ids and gradient tracking. Shapes must match
/// exactly; the first error stops the loading. Returns the model and how
/// many weights it has.
pub fn map_weights(
    model: Transformer,
    source: impl FnMut(usize, &[usize]) -> Result<HostTensor>,
) -> Result<(Transformer, usize)> {
    struct Load<F> {
        source: F,
        next: usize,
        error: Option<Error>,
    }
    impl<F: FnMut(usize, &[usize]) -> Result<HostTensor>> ModuleMapper for Load<F> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let i = self.next;
            self.next += 1;
            let (id, tensor, mapper) = param.consume();
            if self.error.is_some() {
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let v = match (self.source)(i, &tensor.dims()) {
                Ok(v) => v,
                Err(e) => {
                    self.error = Some(e);
                    return Param::from_mapped_value(id, tensor, mapper);
                }
            };
            if v.shape != tensor.dims() {
                self.error = Some(Error::Mismatch(format!(
                    "weight {i}: shape {:?} in the checkpoint, {:?} in the model",
                    v.shape,
                    tensor.dims()
                )));
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let track = tensor.is_require_grad();
            let device = tensor.device();
            drop(tensor);
            let new = Tensor::<D>::from_data(TensorData::new(v.data, v.shape), &device)
                .set_require_grad(track);
            Param::from_mapped_value(id, new, mapper)
        }
    }
    let mut l = Load {
        source,
        next: 0,
        error: None,
    };
    let model = model.map(&mut l);
    match l.error {
        Some(e) => Err(e),
        None => Ok((model, l.next)),
    }
}

/// AdamW (Loshchilov & Hutter 2019, Algorithm 2) with bias correction,
/// linear warmup and global-norm clipping.
#[derive(Debug, Clone)]
pub struct AdamW {
    cfg: OptimizerConfig,
    /// Completed optimizer steps (the `t` of the bias correction).
    step: u64,
    /// First and second moments, flattened, per parameter in visiting order;
    /// `None` until the parameter first gets a gradient.
    moments: Vec<Option<Moments>>,
}

/// One parameter's moments: on the host for the fused update of the flex
/// backend ([`crate::fused::adamw`], in place), as device tensors for the
/// composed update elsewhere.
#[derive(Debug)]
enum Moments {
    Host(Arc<Mutex<HostMoments>>),
    Tensors(Box<(Tensor<1>, Tensor<1>)>),
}

impl Clone for Moments {
    /// A deep copy: a cloned optimizer never shares the host moments.
    fn clone(&self) -> Self {
        match self {
            Moments::Host(h) => Moments::Host(Arc::new(Mutex::new(lock(h).clone()))),
            Moments::Tensors(mv) => Moments::Tensors(mv.clone()),
        }
    }
}

fn lock(h: &Mutex<HostMoments>) -> std::sync::MutexGuard<'_, HostMoments> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

impl Moments {
    /// `(m, v)` on the host (empty before the first update).
    fn host(&self) -> (Vec<f32>, Vec<f32>) {
        let host = |t: &Tensor<1>| t.clone().into_data().try_into_vec::<f32>().expect("f32");
        match self {
            Moments::Host(h) => {
                let h = lock(h);
                (h.m.clone(), h.v.clone())
            }
            Moments::Tensors(mv) => (host(&mv.0), host(&mv.1)),
        }
    }

    /// In the form the update on `device` uses.
    fn on(self, device: &burn::tensor::Device) -> Self {
        match (self, fused::enabled(device)) {
            (Moments::Tensors(mv), true) => {
                let (m, v) = Moments::Tensors(mv).host();
                Moments::Host(Arc::new(Mutex::new(HostMoments { m, v })))
            }
            (Moments::Host(h), false) => {
                let h = lock(&h).clone();
                let n = h.m.len();
                let up = |x: Vec<f32>| Tensor::<1>::from_data(TensorData::new(x, [n]), device);
                Moments::Tensors(Box::new((up(h.m), up(h.v))))
            }
            (same, _) => same,
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// The optimizer's state on the host, for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWState {
    /// Completed steps.
    pub step: u64,
    /// `(m, v)` per parameter in visiting order.
    pub moments: Vec<Option<(Vec<f32>, Vec<f32>)>>,
}

impl AdamW {
    /// A fresh optimizer; the config must be valid.
    pub fn new(cfg: OptimizerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            step: 0,
            moments: Vec::new(),
        })
    }

    /// Completed steps.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The config.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    /// Sets the peak learning rate (stages of a curriculum train at their own
    /// rates); warmup still scales it by the step count.
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Applies one update from `grads` (the gradients of a loss over `model`).
    ///
    /// The gradient `g` of all parameters is scaled by `min(1, c / ‖g‖₂)` when
    /// `max_grad_norm = c > 0`, as `torch.nn.utils.clip_grad_norm_` does.
    pub fn step(&mut self, model: Transformer, grads: &Gradients) -> (Transformer, Update) {
        let mut collect = GradCollector {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut collect);
        let flat = collect.out;
        let fused_norm = flat.iter().flatten().all(|g| fused::enabled(&g.device()));
        let sq: Vec<Tensor<1>> = flat
            .iter()
            .flatten()
            .map(|g| {
                if fused_norm {
                    fused::sum_squares(g.clone())
                } else {
                    g.clone().square().sum()
                }
            })
            .collect();
        let grad_norm = if sq.is_empty() {
            0.0
        } else if fused_norm {
            sq.into_iter()
                .map(|s| f64::from(s.into_data().try_into_vec::<f32>().expect("f32")[0]))
                .sum::<f64>()
                .sqrt()
        } else {
            f64::from(
                Tensor::cat(sq, 0)
                    .sum()
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("f32")[0],
            )
            .sqrt()
        };
        let c = self.cfg.max_grad_norm;
        let scale = if c > 0.0 && grad_norm > c {
            c / (grad_norm + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let lr = self.cfg.lr_at(self.step);
        if self.moments.len() < flat.len() {
            self.moments.resize(flat.len(), None);
        }
        let mut mapper = AdamWMapper {
            cfg: &self.cfg,
            t: self.step as i32,
            lr,
            scale,
            grads: flat,
            moments: &mut self.moments,
            next: 0,
        };
        let model = model.map(&mut mapper);
        (model, Update { grad_norm, lr })
    }

    /// The state on the host.
    pub fn state(&self) -> AdamWState {
        AdamWState {
            step: self.step,
            moments: self
                .moments
                .iter()
                .map(|m| m.as_ref().map(Moments::host))
                .collect(),
        }
    }

    /// Rebuilds an optimizer from a saved state; moments go to `device`.
    pub fn from_state(
        cfg: OptimizerConfig,
        state: &AdamWState,
        device: &burn::tensor::Device,
    ) -> Result<Self> {
        let mut o = Self::new(cfg)?;
        o.step = state.step;
        o.moments = state
            .moments
            .iter()
            .map(|m| {
                m.as_ref().map(|(m, v)| {
                    Moments::Host(Arc::new(Mutex::new(HostMoments {
                        m: m.clone(),
                        v: v.clone(),
                    })))
                    .on(device)
                })
            })
            .collect();
        Ok(o)
    }
}

/// Reads each parameter's gradient, flattened, in visiting order.
struct GradCollector<'a> {
    grads: &'a Gradients,
    out: Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(|g| {
            let n = g.dims().iter().product::<usize>();
            g.reshape([n])
        });
        self.out.push(g);
    }
}

struct AdamWMapper<'a> {
    cfg: &'a OptimizerConfig,
    t: i32,
    lr: f64,
    scale: f64,
    grads: Vec<Option<Tensor<1>>>,
    moments: &'a mut Vec<Option<Moments>>,
    next: usize,
}

impl ModuleMapper for AdamWMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let i = self.next;
        self.next += 1;
        let Some(g) = self.grads.get_mut(i).and_then(Option::take) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        // The new value must keep the parameter's checkpointing strategy:
        // `from_inner` lifts with the default, and one graph may not mix them.
        let strategy = tensor.gradient_checkpointing_strategy();
        let dims = tensor.dims();
        let n = dims.iter().product::<usize>();
        let p = tensor.inner().reshape([n]);
        // Decoupled decay on matrices only; norm gains stay undecayed.
        let decay = if D >= 2 && self.cfg.weight_decay > 0.0 {
            1.0 - self.lr * self.cfg.weight_decay
        } else {
            1.0
        };
        let p = if fused::enabled(&p.device()) {
            self.fused(i, p, g, decay)
        } else {
            self.composed(i, p, g, decay)
        };
        let mut p = Tensor::from_inner(p.reshape(dims));
        if let Some(s) = strategy {
            p = p.with_gradient_checkpointing_strategy(s);
        }
        Param::from_mapped_value(id, p.set_require_grad(true), mapper)
    }
}

impl AdamWMapper<'_> {
    /// The update of parameter `i` as one fused pass on the flex backend,
    /// its moments on the host.
    fn fused(&mut self, i: usize, p: Tensor<1>, g: Tensor<1>, decay: f64) -> Tensor<1> {
        let device = p.device();
        let slot = match self.moments[i].take().map(|m| m.on(&device)) {
            Some(Moments::Host(h)) => h,
            _ => Arc::new(Mutex::new(HostMoments::default())),
        };
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let hyper = AdamHyper {
            scale: self.scale as f32,
            beta1: b1 as f32,
            beta2: b2 as f32,
            one_minus_beta1: (1.0 - b1) as f32,
            one_minus_beta2: (1.0 - b2) as f32,
            correction1: (1.0 - b1.powi(self.t)) as f32,
            correction2: (1.0 - b2.powi(self.t)) as f32,
            decay: decay as f32,
            lr: self.lr as f32,
            eps: self.cfg.eps as f32,
        };
        let p = fused::adamw(p, g, slot.clone(), hyper);
        self.moments[i] = Some(Moments::Host(slot));
        p
    }

    /// The update of parameter `i` from burn's tensor ops (any device).
    fn composed(&mut self, i: usize, p: Tensor<1>, g: Tensor<1>, decay: f64) -> Tensor<1> {
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let device = p.device();
        let g = if self.scale != 1.0 {
            g.mul_scalar(self.scale)
        } else {
            g
        };
        let (m, v) = match self.moments[i].take().map(|m| m.on(&device)) {
            Some(Moments::Tensors(mv)) => (
                mv.0.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
                mv.1.mul_scalar(b2) + g.square().mul_scalar(1.0 - b2),
            ),
            _ => (
                g.clone().mul_scalar(1.0 - b1),
                g.square().mul_scalar(1.0 - b2),
            ),
        };
        let m_hat = m.clone().div_scalar(1.0 - b1.powi(self.t));
        let v_hat = v.clone().div_scalar(1.0 - b2.powi(self.t));
        let p = if decay != 1.0 { p.mul_scalar(decay) } else { p };
        let p = p - (m_hat / (v_hat.sqrt() + self.cfg.eps)).mul_scalar(self.lr);
        self.moments[i] = Some(Moments::Tensors(Box::new((m, v))));
        p
    }
}

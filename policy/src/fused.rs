//! Fused CPU ops for the transformer, as a burn backend extension: a matrix
//! product split across the compute pool, RMSNorm, SwiGLU, and causal
//! attention with rotary positions, each one op in the autodiff graph with a
//! hand-written backward.
//!
//! Why: on the flex backend each of these is a chain of small element-wise
//! kernels (RMSNorm alone is seven ops forward, more backward), each a pass
//! over memory and a node in the graph, and burn-flex's own threading of tall,
//! narrow GEMMs keeps only part of two cores busy. Fused, a training step of
//! the benchmark model takes about half the time (README, "Policy speed").
//!
//! They run on the flex backend only (plain and autodiff): the model calls
//! them when [`enabled`] holds for its device and composes burn's tensor ops
//! everywhere else (CUDA), so both paths compute the same function; tests
//! check that they agree in value and gradient.

pub(crate) mod head;
pub(crate) mod kernels;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use burn::Tensor;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, TensorData};

pub use kernels::AttentionLayout;
use kernels::{AttentionSaved, Mat};

/// The fused ops. Shapes are documented on the [`Tensor`] wrappers below.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `x · w` for 2-D `x` and `w`.
    fn fused_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// RMSNorm over the last dimension.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// `silu(gate) ⊙ up` of `[.., gate | up]`.
    fn fused_swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Rotary causal attention over a fused Q | K | V projection.
    fn fused_attention(qkv: FloatTensor<Self>, layout: Arc<AttentionLayout>) -> FloatTensor<Self>;
    /// Output head and log-softmax: per row, the target's log-prob, the
    /// entropy and the most likely id.
    fn fused_head_scores(
        hidden: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: Arc<Vec<u32>>,
        inv_temperature: f32,
    ) -> FloatTensor<Self>;
    /// The identity; under gradient checkpointing, where recomputation stops
    /// (its output is kept).
    fn fused_boundary(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// One AdamW update of a flat parameter from its flat gradient, the
    /// moments updated in place on the host; returns the new parameter
    /// (written in place when `p` is not shared). Plain tensors only.
    fn fused_adamw(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        moments: Arc<std::sync::Mutex<HostMoments>>,
        hyper: AdamHyper,
    ) -> FloatTensor<Self>;
    /// `Σ x²` of a flat tensor, as `[1]`. Plain tensors only.
    fn fused_sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// One parameter's AdamW moments on the host, flat, updated in place by
/// [`adamw`] (empty until its first update).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMoments {
    /// First moment.
    pub m: Vec<f32>,
    /// Second moment.
    pub v: Vec<f32>,
}

/// The constants of one AdamW update (see [`kernels::adamw`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    /// Gradient scale (global-norm clipping; 1 when not clipped).
    pub scale: f32,
    /// `β₁`, `β₂`.
    pub beta1: f32,
    pub beta2: f32,
    /// `1 − β₁`, `1 − β₂` (from the `f64` betas).
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// Bias corrections `1 − β₁ᵗ`, `1 − β₂ᵗ`.
    pub correction1: f32,
    pub correction2: f32,
    /// Weight factor `1 − lr·weight_decay` (1 for undecayed parameters).
    pub decay: f32,
    /// Learning rate and `ε`.
    pub lr: f32,
    pub eps: f32,
}

#[cfg(test)]
thread_local! {
    static COMPOSITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the fused ops switched off on this thread, so tests can
/// compare the two paths.
#[cfg(test)]
pub(crate) fn composite<R>(f: impl FnOnce() -> R) -> R {
    /// Switches the fused ops back on when dropped, even if `f` panics.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPOSITE.with(|c| c.set(false));
        }
    }
    COMPOSITE.with(|c| c.set(true));
    let _restore = Restore;
    f()
}

/// Whether the fused ops run for tensors on `device`: true on the flex
/// backend, with or without autodiff.
pub fn enabled(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    #[cfg(test)]
    if COMPOSITE.with(std::cell::Cell::get) {
        return false;
    }
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// `x · w`, split across the compute pool.
///
/// # Shapes
/// - x: `[n, k]`, w: `[k, m]`, output: `[n, m]`
pub fn matmul(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_matmul(
        x.into_dispatch(),
        w.into_dispatch(),
    ))
}

/// `x / sqrt(mean(x²) + eps) · gamma` over the last dimension.
///
/// # Shapes
/// - x, output: `[.., d]`; gamma: `[d]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        eps,
    ))
}

/// `silu(gate) ⊙ up` for rows laid out `[gate | up]`.
///
/// # Shapes
/// - gate_up: `[n, 2·f]`, output: `[n, f]`
pub fn swiglu(gate_up: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(
        gate_up.into_dispatch(),
    ))
}

/// Rotary causal self-attention, grouped-query when the layout has fewer
/// key/value heads than query heads; see [`AttentionLayout`] for the mask.
///
/// # Shapes
/// - qkv: `[batch, len, (heads + 2·kv_heads)·head_dim]` (Q | K | V, heads
///   contiguous), output: `[batch, len, heads·head_dim]`
pub fn attention(qkv: Tensor<3>, layout: Arc<AttentionLayout>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        qkv.into_dispatch(),
        layout,
    ))
}

/// Per row of `hidden`, with tempered logits `z = (hidden · w) ·
/// inv_temperature`: `[log softmax(z)[target], entropy of softmax(z), argmax
/// z]`, computed over blocks of the logits (all rows × a slice of the
/// vocabulary) so they never exist whole, and
/// differentiable in the first two columns (the id, an `f32`, carries no
/// gradient).
///
/// # Shapes
/// - hidden: `[n, d]`, w: `[d, vocab]`, targets: `n`, output: `[n, 3]`
pub fn head_scores(
    hidden: Tensor<2>,
    w: Tensor<2>,
    targets: Arc<Vec<u32>>,
    inv_temperature: f32,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_head_scores(
        hidden.into_dispatch(),
        w.into_dispatch(),
        targets,
        inv_temperature,
    ))
}

/// One AdamW update of `p` from `g` on the flex backend: the moments in
/// `moments` are updated in place and the new parameter returned (in place
/// when `p`'s buffer is not shared), one pass over the four arrays instead of
/// a dozen full-size temporaries.
///
/// # Shapes
/// - p, g, output: `[n]`; moments: `n` each (or empty before the first step)
pub fn adamw(
    p: Tensor<1>,
    g: Tensor<1>,
    moments: Arc<std::sync::Mutex<HostMoments>>,
    hyper: AdamHyper,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_adamw(
        p.into_dispatch(),
        g.into_dispatch(),
        moments,
        hyper,
    ))
}

/// `Σ x²` on the flex backend, summed in `f64`.
///
/// # Shapes
/// - x: `[n]`, output: `[1]`
pub fn sum_squares(x: Tensor<1>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_sum_squares(x.into_dispatch()))
}

/// `x` as is; under gradient checkpointing its value is kept and what
/// follows it is recomputed from it in the backward pass (the model puts one
/// before each block, for per-layer checkpointing).
pub fn boundary<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_boundary(x.into_dispatch()))
}

/// The contiguous `f32` elements of `t` (copied only when `t` is a strided view).
fn elements(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().unwrap().to_vec()),
    }
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// A 2-D tensor as a strided matrix (no copy unless its strides are negative).
fn with_mat<R>(t: &FlexTensor, f: impl FnOnce(Mat) -> R) -> R {
    let shape = dims(t);
    assert_eq!(
        shape.len(),
        2,
        "fused matmul takes 2-D tensors, got {shape:?}"
    );
    let strides = t.layout().strides();
    if strides.iter().all(|&s| s >= 0) {
        f(Mat::strided(
            t.storage::<f32>(),
            t.layout().start_offset(),
            [shape[0], shape[1]],
            [strides[0], strides[1]],
        ))
    } else {
        let c = t.to_contiguous();
        f(Mat::new(c.as_slice::<f32>().unwrap(), shape[0], shape[1]))
    }
}

/// `a · b`, either side transposed first (`dx = dy · wᵀ`, `dw = xᵀ · dy`).
fn flex_product(a: &FlexTensor, b: &FlexTensor, [ta, tb]: [bool; 2]) -> FlexTensor {
    with_mat(a, |a| {
        with_mat(b, |b| {
            let a = if ta { a.t() } else { a };
            let b = if tb { b.t() } else { b };
            let ([n, k], [k2, m]) = (a.dims(), b.dims());
            assert_eq!(k, k2, "matmul: [{n}, {k}] · [{k2}, {m}]");
            tensor(kernels::matmul(a, b), vec![n, m])
        })
    })
}

fn flex_matmul(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    flex_product(x, w, [false, false])
}

fn flex_rms_norm(x: &FlexTensor, gamma: &FlexTensor, eps: f64) -> (FlexTensor, Vec<f32>) {
    assert_eq!(
        dims(x).last(),
        dims(gamma).first(),
        "rms_norm: input {:?}, gamma {:?}",
        dims(x),
        dims(gamma)
    );
    let (y, inv) = kernels::rms_norm(&elements(x), &elements(gamma), eps);
    (tensor(y, dims(x)), inv)
}

fn flex_swiglu(gu: &FlexTensor) -> FlexTensor {
    let mut shape = dims(gu);
    let f = shape[shape.len() - 1] / 2;
    *shape.last_mut().unwrap() = f;
    tensor(kernels::swiglu(&elements(gu), f), shape)
}

#[cfg(test)]
thread_local! {
    /// Attention forward passes run on this thread (recomputations included).
    pub(crate) static ATTENTION_PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn flex_attention(qkv: &FlexTensor, l: &AttentionLayout) -> (FlexTensor, AttentionSaved) {
    #[cfg(test)]
    ATTENTION_PASSES.with(|c| c.set(c.get() + 1));
    assert_eq!(
        dims(qkv),
        [l.batch, l.len, (l.heads + 2 * l.kv_heads) * l.head_dim],
        "attention: qkv does not match its layout"
    );
    let (out, saved) = kernels::attention(&elements(qkv), l);
    (
        tensor(out, vec![l.batch, l.len, l.heads * l.head_dim]),
        saved,
    )
}

fn flex_head_scores(
    h: &FlexTensor,
    w: &FlexTensor,
    targets: &[u32],
    inv_temperature: f32,
) -> (FlexTensor, head::HeadSaved) {
    let n = dims(h)[0];
    let (out, saved) = with_mat(h, |h| {
        with_mat(w, |w| {
            let blocks = head::blocks(h.dims()[0], w.dims()[1]);
            head::scores(h, w, targets, inv_temperature, blocks)
        })
    });
    (tensor(out, vec![n, head::COLUMNS]), saved)
}

impl FusedOps for Flex {
    fn fused_matmul(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        flex_matmul(&x, &w)
    }

    fn fused_rms_norm(x: FlexTensor, gamma: FlexTensor, eps: f64) -> FlexTensor {
        flex_rms_norm(&x, &gamma, eps).0
    }

    fn fused_swiglu(gate_up: FlexTensor) -> FlexTensor {
        flex_swiglu(&gate_up)
    }

    fn fused_attention(qkv: FlexTensor, layout: Arc<AttentionLayout>) -> FlexTensor {
        flex_attention(&qkv, &layout).0
    }

    fn fused_head_scores(
        hidden: FlexTensor,
        w: FlexTensor,
        targets: Arc<Vec<u32>>,
        inv_temperature: f32,
    ) -> FlexTensor {
        flex_head_scores(&hidden, &w, &targets, inv_temperature).0
    }

    fn fused_boundary(x: FlexTensor) -> FlexTensor {
        x
    }

    fn fused_adamw(
        mut p: FlexTensor,
        g: FlexTensor,
        moments: Arc<std::sync::Mutex<HostMoments>>,
        hyper: AdamHyper,
    ) -> FlexTensor {
        let g = elements(&g);
        let mut guard = moments.lock().unwrap_or_else(|e| e.into_inner());
        let HostMoments { m, v } = &mut *guard;
        if m.is_empty() {
            (*m, *v) = (vec![0.0; g.len()], vec![0.0; g.len()]);
        }
        let shape = dims(&p);
        match (p.is_contiguous() && p.layout().start_offset() == 0)
            .then(|| p.try_storage_mut::<f32>())
            .flatten()
        {
            Some(buf) => {
                kernels::adamw(buf, &g, m, v, &hyper);
                p
            }
            None => {
                let mut out = elements(&p).into_owned();
                kernels::adamw(&mut out, &g, m, v, &hyper);
                tensor(out, shape)
            }
        }
    }

    fn fused_sum_squares(x: FlexTensor) -> FlexTensor {
        tensor(vec![kernels::sum_squares(&elements(&x)) as f32], vec![1])
    }
}

/// Whether the autodiff strategy `C` recomputes memory-bound ops (gradient
/// checkpointing) rather than keeping their outputs.
fn recomputes<C: CheckpointStrategy>() -> bool {
    std::any::TypeId::of::<C>() != std::any::TypeId::of::<NoCheckpointing>()
}

/// The fused ops keep their inputs as checkpointed node ids, not tensors: with
/// burn's balanced strategy (gradient checkpointing) every fused op but the
/// head is memory-bound and recomputed from the nearest kept ancestor in the
/// backward pass, and [`boundary`] keeps each block's input, so a block's
/// activations are recomputed from its input (per-layer checkpointing). With
/// no checkpointing every op is compute-bound and its inputs are kept as
/// before.
#[derive(Debug)]
struct MatmulBackward;

#[derive(Debug)]
struct RetroMatmul {
    x: NodeId,
    w: NodeId,
}

impl RetroForward for RetroMatmul {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        let w: FlexTensor = states.get_state(&self.w);
        states.save(out, flex_matmul(&x, &w));
    }
}

impl Backward<Flex, 2> for MatmulBackward {
    /// `x` when `w` needs a gradient, `w` when `x` does (as burn's own
    /// matmul keeps them, so a frozen weight does not keep activations alive).
    type State = (Option<NodeId>, Option<NodeId>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let x: Option<FlexTensor> = x.map(|id| c.retrieve_node_output(id));
        let w: Option<FlexTensor> = w.map(|id| c.retrieve_node_output(id));
        if let (Some(node), Some(w)) = (node_x, w) {
            grads.register::<Flex>(node.id, flex_product(&dy, &w, [false, true]));
        }
        if let (Some(node), Some(x)) = (node_w, x) {
            grads.register::<Flex>(node.id, flex_product(&x, &dy, [true, false]));
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

#[derive(Debug)]
struct RetroRmsNorm {
    x: NodeId,
    gamma: NodeId,
    eps: f64,
}

impl RetroForward for RetroRmsNorm {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        let gamma: FlexTensor = states.get_state(&self.gamma);
        states.save(out, flex_rms_norm(&x, &gamma, self.eps).0);
    }
}

impl Backward<Flex, 2> for RmsNormBackward {
    /// `x`, `gamma` and `eps` (each row's `1 / rms` is computed again).
    type State = (NodeId, NodeId, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [node_x, node_gamma] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, eps) = ops.state;
        let x: FlexTensor = c.retrieve_node_output(x);
        let gamma: FlexTensor = c.retrieve_node_output(gamma);
        let (x_el, gamma_el) = (elements(&x), elements(&gamma));
        let inv = kernels::rms_inverse(&x_el, gamma_el.len(), eps);
        let (dx, dgamma) = kernels::rms_norm_backward(&x_el, &gamma_el, &inv, &elements(&dy));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, dims(&x)));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, dims(&gamma)));
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

#[derive(Debug)]
struct RetroSwiglu {
    gu: NodeId,
}

impl RetroForward for RetroSwiglu {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let gu: FlexTensor = states.get_state(&self.gu);
        states.save(out, flex_swiglu(&gu));
    }
}

impl Backward<Flex, 1> for SwigluBackward {
    /// The `[gate | up]` input.
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let gu: FlexTensor = c.retrieve_node_output(ops.state);
        if let Some(node) = node {
            let f = dims(&gu).last().copied().unwrap_or(0) / 2;
            let dgu = kernels::swiglu_backward(&elements(&gu), &elements(&dy), f);
            grads.register::<Flex>(node.id, tensor(dgu, dims(&gu)));
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

#[derive(Debug)]
struct RetroAttention {
    qkv: NodeId,
    layout: Arc<AttentionLayout>,
}

impl RetroForward for RetroAttention {
    fn forward(&self, states: &mut BackwardStates, out: NodeId) {
        let qkv: FlexTensor = states.get_state(&self.qkv);
        states.save(out, flex_attention(&qkv, &self.layout).0);
    }
}

impl Backward<Flex, 1> for AttentionBackward {
    /// `qkv`, the layout, and the forward's rotated queries, keys and
    /// weights (`None` under checkpointing: computed again).
    type State = (NodeId, Arc<AttentionLayout>, Option<Arc<AttentionSaved>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (qkv, layout, saved) = ops.state;
        let qkv: FlexTensor = c.retrieve_node_output(qkv);
        if let Some(node) = node {
            let saved = saved.unwrap_or_else(|| Arc::new(flex_attention(&qkv, &layout).1));
            let dqkv =
                kernels::attention_backward(&elements(&qkv), &layout, &saved, &elements(&dy));
            grads.register::<Flex>(node.id, tensor(dqkv, dims(&qkv)));
        }
    }
}

#[derive(Debug)]
struct HeadScoresBackward;

impl Backward<Flex, 2> for HeadScoresBackward {
    /// `hidden`, `w`, the targets, the inverse temperature and each row's
    /// log-sum-exp and entropy.
    type State = (NodeId, NodeId, Arc<Vec<u32>>, f32, Arc<head::HeadSaved>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [node_h, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (h, w, targets, inv_t, saved) = ops.state;
        let h: FlexTensor = c.retrieve_node_output(h);
        let w: FlexTensor = c.retrieve_node_output(w);
        let (dh, dw) = with_mat(&h, |hm| {
            with_mat(&w, |wm| {
                let blocks = head::blocks(hm.dims()[0], wm.dims()[1]);
                head::scores_backward(hm, wm, &targets, inv_t, &saved, &elements(&dy), blocks)
            })
        });
        if let Some(node) = node_h {
            grads.register::<Flex>(node.id, tensor(dh, dims(&h)));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, dims(&w)));
        }
    }
}

#[derive(Debug)]
struct BoundaryBackward;

impl Backward<Flex, 1> for BoundaryBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            grads.register::<Flex>(node.id, dy);
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_matmul(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let retro = RetroMatmul {
            x: x.id(),
            w: w.id(),
        };
        match MatmulBackward
            .prepare::<C>([x.node(), w.node()])
            .memory_bound()
            .retro_forward(retro)
            .parents([&x, &w])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
                let state = (
                    w_tracked.then(|| prep.checkpoint(&x)),
                    x_tracked.then(|| prep.checkpoint(&w)),
                );
                let y = flex_matmul(&x.into_primitive(), &w.into_primitive());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(flex_matmul(&x.into_primitive(), &w.into_primitive()))
            }
        }
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let retro = RetroRmsNorm {
            x: x.id(),
            gamma: gamma.id(),
            eps,
        };
        match RmsNormBackward
            .prepare::<C>([x.node(), gamma.node()])
            .memory_bound()
            .retro_forward(retro)
            .parents([&x, &gamma])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&gamma), eps);
                let y = flex_rms_norm(&x.into_primitive(), &gamma.into_primitive(), eps).0;
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(flex_rms_norm(&x.into_primitive(), &gamma.into_primitive(), eps).0)
            }
        }
    }

    fn fused_swiglu(gate_up: FloatTensor<Self>) -> FloatTensor<Self> {
        let retro = RetroSwiglu { gu: gate_up.id() };
        match SwigluBackward
            .prepare::<C>([gate_up.node()])
            .memory_bound()
            .retro_forward(retro)
            .parents([&gate_up])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&gate_up);
                let y = flex_swiglu(&gate_up.into_primitive());
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_swiglu(&gate_up.into_primitive())),
        }
    }

    fn fused_attention(qkv: FloatTensor<Self>, layout: Arc<AttentionLayout>) -> FloatTensor<Self> {
        let retro = RetroAttention {
            qkv: qkv.id(),
            layout: layout.clone(),
        };
        match AttentionBackward
            .prepare::<C>([qkv.node()])
            .memory_bound()
            .retro_forward(retro)
            .parents([&qkv])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let id = prep.checkpoint(&qkv);
                let (y, saved) = flex_attention(&qkv.into_primitive(), &layout);
                let saved = (!recomputes::<C>()).then(|| Arc::new(saved));
                prep.finish((id, layout, saved), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(flex_attention(&qkv.into_primitive(), &layout).0)
            }
        }
    }

    fn fused_head_scores(
        hidden: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: Arc<Vec<u32>>,
        inv_temperature: f32,
    ) -> FloatTensor<Self> {
        // Compute-bound: its output is small and its product the largest.
        match HeadScoresBackward
            .prepare::<C>([hidden.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = (prep.checkpoint(&hidden), prep.checkpoint(&w));
                let (h, w) = (hidden.into_primitive(), w.into_primitive());
                let (y, saved) = flex_head_scores(&h, &w, &targets, inv_temperature);
                prep.finish((ids.0, ids.1, targets, inv_temperature, Arc::new(saved)), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                flex_head_scores(
                    &hidden.into_primitive(),
                    &w.into_primitive(),
                    &targets,
                    inv_temperature,
                )
                .0,
            ),
        }
    }

    fn fused_boundary(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Compute-bound, so under checkpointing the recomputation of the ops
        // after it stops here and its output is what is kept.
        BoundaryBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(x.into_primitive())
    }

    fn fused_adamw(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: Arc<std::sync::Mutex<HostMoments>>,
        _: AdamHyper,
    ) -> FloatTensor<Self> {
        unreachable!("the optimizer updates the parameters' plain tensors, not tracked ones")
    }

    fn fused_sum_squares(_: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the optimizer reads the gradients' plain tensors, not tracked ones")
    }
}

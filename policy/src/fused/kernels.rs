//! The CPU kernels behind the fused ops, on plain `f32` slices: matrix
//! products split across the current rayon pool, RMSNorm, SwiGLU and causal
//! attention with rotary positions, each with its backward.
//!
//! Every function is pure: it reads its inputs and writes fresh outputs, and
//! the work is split by rows (or heads) so no two threads write one element.

use rayon::prelude::*;

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_MACS: usize = 1 << 18;
/// Fewest rows (or columns) one thread's share of a product gets.
const MIN_SPLIT: usize = 16;
/// Rows per task of the row-wise element kernels.
const ROWS_PER_TASK: usize = 64;

/// A strided read-only matrix: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    off: usize,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix filling `data`.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix of {rows}×{cols}");
        Self::strided(data, 0, [rows, cols], [cols as isize, 1])
    }

    /// `rows × cols` elements of `data` from `off`, `strides` = [row, column].
    pub(crate) fn strided(
        data: &'a [f32],
        off: usize,
        [rows, cols]: [usize; 2],
        [rs, cs]: [isize; 2],
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = off as isize + (rows as isize - 1) * rs + (cols as isize - 1) * cs;
            assert!(
                rs >= 0 && cs >= 0 && (last as usize) < data.len(),
                "strided view out of bounds"
            );
        }
        Self {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// `[rows, cols]`.
    pub(crate) fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `start..start + n`.
    pub(crate) fn row_block(self, start: usize, n: usize) -> Self {
        Self::strided(
            self.data,
            self.off + start * self.rs as usize,
            [n, self.cols],
            [self.rs, self.cs],
        )
    }

    /// Columns `start..start + n`.
    pub(crate) fn col_block(self, start: usize, n: usize) -> Self {
        Self::strided(
            self.data,
            self.off + start * self.cs as usize,
            [self.rows, n],
            [self.rs, self.cs],
        )
    }

    fn ptr(&self) -> *const f32 {
        // In bounds: checked by `strided` (an empty view is never read).
        self.data.as_ptr().wrapping_add(self.off)
    }
}

/// A raw output pointer handed to the threads that write disjoint blocks of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every user writes a block no other thread touches.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out[i·out_rs + j] (+)= a·b` on this thread (`accumulate` adds to `out`).
///
/// # Safety
/// `out` must be valid for writes of `a.rows` rows of `b.cols` elements at
/// row stride `out_rs`, and no other thread may touch them.
unsafe fn gemm_serial(a: Mat, b: Mat, out: *mut f32, out_rs: usize, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for i in 0..a.rows {
                // SAFETY: the caller's contract on `out`.
                unsafe { std::ptr::write_bytes(out.add(i * out_rs), 0, b.cols) };
            }
        }
        return;
    }
    // SAFETY: the views are bounds-checked and `out` is the caller's to write.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            out,
            1,
            out_rs as isize,
            accumulate,
            a.ptr(),
            a.cs,
            a.rs,
            b.ptr(),
            b.cs,
            b.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `a · b` as a fresh row-major `a.rows × b.cols` matrix.
///
/// The product is cut into one block per thread of the current rayon pool,
/// along whichever of the output's dimensions is longer, and each block runs
/// as one single-threaded GEMM: on 2 cores that is about 1.4× the throughput
/// of gemm's own splitting of a tall, narrow product. Results repeat exactly
/// for a given thread count; across thread counts the blocks differ, gemm may
/// take another code path for them, and the last bits may differ.
pub(crate) fn matmul(a: Mat, b: Mat) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let mut out = vec![0.0f32; m * n];
    matmul_into(a, b, &mut out, false);
    out
}

/// `out (+)= a · b`, `out` row-major `a.rows × b.cols`; see [`matmul`].
pub(crate) fn matmul_into(a: Mat, b: Mat, out: &mut [f32], accumulate: bool) {
    assert_eq!(
        out.len(),
        a.rows * b.cols,
        "output of {}×{}",
        a.rows,
        b.cols
    );
    matmul_into_strided(a, b, out, b.cols, accumulate);
}

/// `out (+)= a · b` with row `i` of the product at `out[i·out_rs..]` (a
/// column block of a wider matrix when `out_rs > b.cols`); see [`matmul`].
pub(crate) fn matmul_into_strided(
    a: Mat,
    b: Mat,
    out: &mut [f32],
    out_rs: usize,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        out_rs >= n && (m == 0 || n == 0 || out.len() >= (m - 1) * out_rs + n),
        "output of {m}×{n} at row stride {out_rs} in {} elements",
        out.len()
    );
    let threads = rayon::current_num_threads();
    let by_rows = m >= n;
    let long = if by_rows { m } else { n };
    let parts = threads.min(long / MIN_SPLIT).max(1);
    if parts == 1 || m * n * k < PARALLEL_MACS {
        // SAFETY: `out` holds the m rows of n at stride `out_rs` (checked).
        unsafe { gemm_serial(a, b, out.as_mut_ptr(), out_rs, accumulate) };
        return;
    }
    let per = long.div_ceil(parts);
    // Blocks of `per`; fewer than `parts` when `per` rounds up (48 threads
    // over 1024 columns: blocks of 22, so 47 of them, not 48).
    let parts = long.div_ceil(per);
    let ptr = OutPtr(out.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|p| {
        let start = p * per;
        let len = per.min(long - start);
        // SAFETY: rows (or columns) `start..start + len` of the product are
        // this task's alone, inside `out` (checked), which outlives the loop.
        unsafe {
            if by_rows {
                gemm_serial(
                    a.row_block(start, len),
                    b,
                    ptr.get().add(start * out_rs),
                    out_rs,
                    accumulate,
                )
            } else {
                gemm_serial(
                    a,
                    b.col_block(start, len),
                    ptr.get().add(start),
                    out_rs,
                    accumulate,
                )
            }
        };
    });
}

/// Elements per task of the optimizer's kernels.
const ELEMENTS_PER_TASK: usize = 1 << 16;

/// One AdamW step (Loshchilov & Hutter 2019, Algorithm 2) over flat arrays,
/// in place, in the order and `f32` arithmetic of the composed update:
/// `g ← g·scale`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p·decay − lr·(m / c₁) / (sqrt(v / c₂) + ε)`.
pub(crate) fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &super::AdamHyper) {
    assert!(
        p.len() == g.len() && m.len() == g.len() && v.len() == g.len(),
        "adamw: {} parameters, {} gradients, {} / {} moments",
        p.len(),
        g.len(),
        m.len(),
        v.len()
    );
    p.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(m.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(v.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let g = if h.scale != 1.0 { g * h.scale } else { g };
                *m = *m * h.beta1 + g * h.one_minus_beta1;
                *v = *v * h.beta2 + g * g * h.one_minus_beta2;
                let m_hat = *m / h.correction1;
                let v_hat = *v / h.correction2;
                let q = if h.decay != 1.0 { *p * h.decay } else { *p };
                *p = q - m_hat / (v_hat.sqrt() + h.eps) * h.lr;
            }
        });
}

/// `Σ x²`, per task in `f32`, the tasks' sums in `f64`.
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(ELEMENTS_PER_TASK)
        .map(|c| f64::from(c.iter().map(|v| v * v).sum::<f32>()))
        .sum()
}

/// Runs `f(first_row, rows)` over `rows`-row tasks of `out` (`width` per row).
fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if width == 0 {
        return;
    }
    out.par_chunks_mut(ROWS_PER_TASK * width)
        .enumerate()
        .for_each(|(task, chunk)| f(task * ROWS_PER_TASK, chunk));
}

/// RMSNorm of each `d`-wide row: `y = x / sqrt(mean(x²) + eps) · gamma`
/// (Zhang & Sennrich 2019, eq. 4). Returns `y` and each row's `1 / rms`.
pub(crate) fn rms_norm(x: &[f32], gamma: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "rms_norm: {} elements in rows of {d}",
        x.len()
    );
    let rows = x.len() / d;
    let mut y = vec![0.0f32; x.len()];
    let mut inv = vec![0.0f32; rows];
    inv.par_chunks_mut(ROWS_PER_TASK)
        .zip(y.par_chunks_mut(ROWS_PER_TASK * d))
        .enumerate()
        .for_each(|(task, (inv, y))| {
            let first = task * ROWS_PER_TASK;
            for (r, (inv, y)) in inv.iter_mut().zip(y.chunks_mut(d)).enumerate() {
                let x = &x[(first + r) * d..(first + r + 1) * d];
                *inv = inv_rms(x, eps);
                for ((y, x), g) in y.iter_mut().zip(x).zip(gamma) {
                    *y = x * *inv * g;
                }
            }
        });
    (y, inv)
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
fn inv_rms(x: &[f32], eps: f64) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (ms as f64 + eps).sqrt() as f32
}

/// Each `d`-wide row's `1 / rms`, exactly as [`rms_norm`] computes it.
pub(crate) fn rms_inverse(x: &[f32], d: usize, eps: f64) -> Vec<f32> {
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "rms: {} elements in rows of {d}",
        x.len()
    );
    let mut inv = vec![0.0f32; x.len() / d];
    inv.par_chunks_mut(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, inv)| {
            let first = task * ROWS_PER_TASK;
            for (r, inv) in inv.iter_mut().enumerate() {
                *inv = inv_rms(&x[(first + r) * d..(first + r + 1) * d], eps);
            }
        });
    inv
}

/// Backward of [`rms_norm`]: with `u = dy ⊙ gamma` and `r = 1/rms`,
/// `dx = r·u − x·r³·(u·x)/d` and `dgamma = Σ_rows dy ⊙ x·r`.
pub(crate) fn rms_norm_backward(
    x: &[f32],
    gamma: &[f32],
    inv: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    assert!(
        x.len() == dy.len() && x.len() == inv.len() * d,
        "rms_norm backward: {} inputs, {} gradients, {} rows of {d}",
        x.len(),
        dy.len(),
        inv.len()
    );
    let mut dx = vec![0.0f32; x.len()];
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(ROWS_PER_TASK * d)
        .enumerate()
        .map(|(task, dx)| {
            let mut dgamma = vec![0.0f32; d];
            for (r, dx) in dx.chunks_mut(d).enumerate() {
                let row = task * ROWS_PER_TASK + r;
                let (x, dy, ri) = (
                    &x[row * d..(row + 1) * d],
                    &dy[row * d..(row + 1) * d],
                    inv[row],
                );
                let ux: f32 = dy
                    .iter()
                    .zip(gamma)
                    .zip(x)
                    .map(|((dy, g), x)| dy * g * x)
                    .sum();
                let c = ri * ri * ri * ux / d as f32;
                for (((dx, dy), g), (x, dg)) in dx
                    .iter_mut()
                    .zip(dy)
                    .zip(gamma)
                    .zip(x.iter().zip(dgamma.iter_mut()))
                {
                    *dx = ri * dy * g - x * c;
                    *dg += dy * x * ri;
                }
            }
            dgamma
        })
        .collect();
    let mut dgamma = vec![0.0f32; d];
    for p in partials {
        for (a, b) in dgamma.iter_mut().zip(p) {
            *a += b;
        }
    }
    (dx, dgamma)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// SwiGLU (Shazeer 2020, eq. 6 without the projections) of rows laid out
/// `[gate (f) | up (f)]`: `y = silu(gate) ⊙ up`, `f` wide.
pub(crate) fn swiglu(gu: &[f32], f: usize) -> Vec<f32> {
    assert!(
        f > 0 && gu.len().is_multiple_of(2 * f),
        "swiglu: {} elements in rows of 2·{f}",
        gu.len()
    );
    let mut y = vec![0.0f32; gu.len() / 2];
    par_rows(&mut y, f, |first, y| {
        for (r, y) in y.chunks_mut(f).enumerate() {
            let row = &gu[(first + r) * 2 * f..(first + r + 1) * 2 * f];
            let (g, u) = row.split_at(f);
            for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
                *y = g * sigmoid(*g) * u;
            }
        }
    });
    y
}

/// Backward of [`swiglu`]: `d up = dy ⊙ silu(g)`,
/// `d gate = dy ⊙ up ⊙ σ(g)·(1 + g·(1 − σ(g)))`.
pub(crate) fn swiglu_backward(gu: &[f32], dy: &[f32], f: usize) -> Vec<f32> {
    assert_eq!(
        gu.len(),
        2 * dy.len(),
        "swiglu backward: inputs and gradients"
    );
    let mut dgu = vec![0.0f32; gu.len()];
    par_rows(&mut dgu, 2 * f, |first, dgu| {
        for (r, dgu) in dgu.chunks_mut(2 * f).enumerate() {
            let row = first + r;
            let (g, u) = gu[row * 2 * f..(row + 1) * 2 * f].split_at(f);
            let dy = &dy[row * f..(row + 1) * f];
            let (dg, du) = dgu.split_at_mut(f);
            for i in 0..f {
                let s = sigmoid(g[i]);
                du[i] = dy[i] * g[i] * s;
                dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            }
        }
    });
    dgu
}

/// The shape and padding of one attention call.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionLayout {
    /// Rows.
    pub batch: usize,
    /// Slots per row.
    pub len: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`): query head `i` reads key/value
    /// head `i / (heads / kv_heads)`.
    pub kv_heads: usize,
    /// Width of one head (even).
    pub head_dim: usize,
    /// `batch × len`: true for real tokens. A query attends to real keys at or
    /// before its slot, and always to itself.
    pub valid: Vec<bool>,
    /// `batch × len × head_dim`: cosines of each slot's rotary angles, each
    /// repeated for both halves of a head.
    pub cos: Vec<f32>,
    /// Sines, laid out like `cos`.
    pub sin: Vec<f32>,
}

/// What the attention backward needs from the forward.
#[derive(Debug, Clone)]
pub(crate) struct AttentionSaved {
    /// Rotated queries, `[batch, heads, len, head_dim]`.
    q: Vec<f32>,
    /// Rotated keys, `[batch, kv_heads, len, head_dim]`.
    k: Vec<f32>,
    /// Attention weights, `[batch, heads, len, len]` (zero where masked).
    p: Vec<f32>,
}

impl AttentionLayout {
    /// Width of the attention output (all query heads).
    fn d(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of one slot of the fused projection: Q | K | V.
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Query heads per key/value head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Column of key head `g`'s first channel in a slot of the projection.
    fn k_col(&self, g: usize) -> usize {
        (self.heads + g) * self.head_dim
    }

    /// Column of value head `g`'s first channel.
    fn v_col(&self, g: usize) -> usize {
        (self.heads + self.kv_heads + g) * self.head_dim
    }

    /// The cosines and sines of slot `slot`'s rotary angles.
    fn tables(&self, slot: usize) -> (&[f32], &[f32]) {
        let hd = self.head_dim;
        (
            &self.cos[slot * hd..(slot + 1) * hd],
            &self.sin[slot * hd..(slot + 1) * hd],
        )
    }

    /// `x ⊙ cos + rotate_half(x) ⊙ sin` for slot `slot` (RoFormer eq. 34).
    fn rotate(&self, slot: usize, x: &[f32], out: &mut [f32]) {
        let half = self.head_dim / 2;
        let (c, s) = self.tables(slot);
        for i in 0..half {
            out[i] = x[i] * c[i] - x[i + half] * s[i];
            out[i + half] = x[i + half] * c[i + half] + x[i] * s[i + half];
        }
    }

    /// The transpose of [`AttentionLayout::rotate`], for gradients.
    fn unrotate(&self, slot: usize, g: &[f32], out: &mut [f32]) {
        let half = self.head_dim / 2;
        let (c, s) = self.tables(slot);
        for i in 0..half {
            out[i] = g[i] * c[i] + g[i + half] * s[i + half];
            out[i + half] = g[i + half] * c[i + half] - g[i] * s[i];
        }
    }

    fn allowed(&self, b: usize, q: usize, k: usize) -> bool {
        k == q || (k < q && self.valid[b * self.len + k])
    }

    /// `(batch, len, heads, kv_heads, head_dim, d, width)`, once the layout
    /// is checked against a projection of `qkv_len` elements.
    fn sizes(&self, qkv_len: usize) -> (usize, usize, usize, usize, usize, usize, usize) {
        let (b, t, h, kv, hd) = (
            self.batch,
            self.len,
            self.heads,
            self.kv_heads,
            self.head_dim,
        );
        assert!(
            hd % 2 == 0
                && kv > 0
                && h % kv == 0
                && self.valid.len() == b * t
                && self.cos.len() == b * t * hd
                && self.sin.len() == self.cos.len(),
            "attention layout does not match [{b}, {t}] × {h} query / {kv} key-value heads of {hd}"
        );
        let w = self.width();
        assert_eq!(qkv_len, b * t * w, "qkv of [{b}, {t}, {w}]");
        (b, t, h, kv, hd, self.d(), w)
    }
}

/// Causal self-attention with rotary positions over a fused projection,
/// grouped-query when `kv_heads < heads`.
///
/// `qkv` is `[batch, len, (heads + 2·kv_heads)·head_dim]` with columns
/// Q | K | V, heads contiguous within each. Queries and keys are rotated,
/// then per query head `softmax(q·kᵀ/√head_dim + mask)·v` (Vaswani et al.
/// 2017, eq. 1) with the key/value head it reads. Returns the output
/// `[batch, len, heads·head_dim]` (heads concatenated) and what the backward
/// needs. One task per (row, key/value head) covers its group of query heads.
pub(crate) fn attention(qkv: &[f32], l: &AttentionLayout) -> (Vec<f32>, AttentionSaved) {
    let (b, t, h, kv, hd, d, w) = l.sizes(qkv.len());
    let group = l.group();
    if b * t * d == 0 {
        let empty = AttentionSaved {
            q: Vec::new(),
            k: Vec::new(),
            p: Vec::new(),
        };
        return (Vec::new(), empty);
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let mut q = vec![0.0f32; b * h * t * hd];
    let mut k = vec![0.0f32; b * kv * t * hd];
    let mut p = vec![0.0f32; b * h * t * t];
    let mut out = vec![0.0f32; b * t * d];
    let out_ptr = OutPtr(out.as_mut_ptr());
    q.par_chunks_mut(group * t * hd)
        .zip(k.par_chunks_mut(t * hd))
        .zip(p.par_chunks_mut(group * t * t))
        .enumerate()
        .for_each(|(bg, ((qg, k), pg))| {
            let (row, g) = (bg / kv, bg % kv);
            for s in 0..t {
                let base = (row * t + s) * w + l.k_col(g);
                l.rotate(
                    row * t + s,
                    &qkv[base..base + hd],
                    &mut k[s * hd..(s + 1) * hd],
                );
            }
            let v = Mat::strided(qkv, row * t * w + l.v_col(g), [t, hd], [w as isize, 1]);
            for (j, (q, p)) in qg.chunks_mut(t * hd).zip(pg.chunks_mut(t * t)).enumerate() {
                let head = g * group + j;
                for s in 0..t {
                    let base = (row * t + s) * w + head * hd;
                    l.rotate(
                        row * t + s,
                        &qkv[base..base + hd],
                        &mut q[s * hd..(s + 1) * hd],
                    );
                }
                // Scores q·kᵀ, then masked softmax per query row.
                // SAFETY: `p` is t×t and this task's.
                unsafe {
                    gemm_serial(
                        Mat::new(q, t, hd),
                        Mat::new(k, t, hd).t(),
                        p.as_mut_ptr(),
                        t,
                        false,
                    )
                };
                for i in 0..t {
                    let pr = &mut p[i * t..(i + 1) * t];
                    let mut max = f32::NEG_INFINITY;
                    for (j, v) in pr.iter_mut().enumerate() {
                        if l.allowed(row, i, j) {
                            *v *= scale;
                            max = max.max(*v);
                        }
                    }
                    let mut sum = 0.0f32;
                    for (j, v) in pr.iter_mut().enumerate() {
                        *v = if l.allowed(row, i, j) {
                            (*v - max).exp()
                        } else {
                            0.0
                        };
                        sum += *v;
                    }
                    let inv = 1.0 / sum;
                    pr.iter_mut().for_each(|v| *v *= inv);
                }
                // P·V straight into this head's columns of `out` ([b, t, h·hd]).
                // SAFETY: rows `row·t..` at columns `head·hd..+hd` of `out`
                // are this task's alone, and `out` outlives the parallel loop.
                unsafe {
                    let dst = out_ptr.get().add(row * t * d + head * hd);
                    gemm_serial(Mat::new(p, t, t), v, dst, d, false)
                };
            }
        });
    (out, AttentionSaved { q, k, p })
}

/// Backward of [`attention`]: the gradient of `qkv` from that of the output.
pub(crate) fn attention_backward(
    qkv: &[f32],
    l: &AttentionLayout,
    saved: &AttentionSaved,
    dout: &[f32],
) -> Vec<f32> {
    let (b, t, h, kv, hd, d, w) = l.sizes(qkv.len());
    let group = l.group();
    assert_eq!(dout.len(), b * t * d, "output gradient of [{b}, {t}, {d}]");
    if b * t * d == 0 {
        return vec![0.0; qkv.len()];
    }
    let scale = 1.0 / (hd as f32).sqrt();
    // Each (row, key/value head) writes the d q columns of its query heads
    // and its own d k, d v columns of `dqkv`.
    let mut dqkv = vec![0.0f32; b * t * w];
    let dst = OutPtr(dqkv.as_mut_ptr());
    (0..b * kv).into_par_iter().for_each(|bg| {
        let (row, g) = (bg / kv, bg % kv);
        let k = Mat::new(&saved.k[bg * t * hd..(bg + 1) * t * hd], t, hd);
        let v = Mat::strided(qkv, row * t * w + l.v_col(g), [t, hd], [w as isize, 1]);
        // Slot `s`'s first gradient at column `col` of the projection.
        let at = |col: usize, s: usize| (row * t + s) * w + col;
        let mut ds = vec![0.0f32; t * t];
        let mut dqr = vec![0.0f32; t * hd];
        // The rotated keys' gradient, summed over the group.
        let mut dkr = vec![0.0f32; t * hd];
        for j in 0..group {
            let head = g * group + j;
            let bh = row * h + head;
            let q = Mat::new(&saved.q[bh * t * hd..(bh + 1) * t * hd], t, hd);
            let p = &saved.p[bh * t * t..(bh + 1) * t * t];
            let dout = Mat::strided(dout, row * t * d + head * hd, [t, hd], [d as isize, 1]);
            // dV += Pᵀ·dO; dP = dO·Vᵀ
            // SAFETY: dV goes to this task's columns of `dqkv` (row stride
            // `w`), which outlives the loop; `ds` is t×t.
            unsafe {
                gemm_serial(
                    Mat::new(p, t, t).t(),
                    dout,
                    dst.get().add(at(l.v_col(g), 0)),
                    w,
                    j > 0,
                );
                gemm_serial(dout, v.t(), ds.as_mut_ptr(), t, false);
            }
            // dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the score scale.
            for i in 0..t {
                let (pr, dr) = (&p[i * t..(i + 1) * t], &mut ds[i * t..(i + 1) * t]);
                let dot: f32 = pr.iter().zip(dr.iter()).map(|(p, d)| p * d).sum();
                for (d, p) in dr.iter_mut().zip(pr) {
                    *d = p * (*d - dot) * scale;
                }
            }
            let dsm = Mat::new(&ds, t, t);
            // SAFETY: local buffers of the right sizes.
            unsafe {
                gemm_serial(dsm, k, dqr.as_mut_ptr(), hd, false);
                gemm_serial(dsm.t(), q, dkr.as_mut_ptr(), hd, j > 0);
            }
            for s in 0..t {
                // SAFETY: `hd` elements of this task's columns of `dqkv`.
                let dq =
                    unsafe { std::slice::from_raw_parts_mut(dst.get().add(at(head * hd, s)), hd) };
                l.unrotate(row * t + s, &dqr[s * hd..(s + 1) * hd], dq);
            }
        }
        for s in 0..t {
            // SAFETY: as above.
            let dk =
                unsafe { std::slice::from_raw_parts_mut(dst.get().add(at(l.k_col(g), s)), hd) };
            l.unrotate(row * t + s, &dkr[s * hd..(s + 1) * hd], dk);
        }
    });
    dqkv
}

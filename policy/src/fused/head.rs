//! The output head and log-softmax as one kernel: per row the target's
//! log-prob, the entropy and the most likely id, computed over blocks of the
//! logits (all rows × a slice of the vocabulary, an online softmax across the
//! slices) so the `[rows, vocab]` logits never exist whole, forward or
//! backward (the backward computes each block's logits again).
//!
//! The per-row passes over the vocabulary (scale, max, exponential sums; the
//! backward's softmax gradient) run on an exponential that the compiler can
//! vectorise, built for AVX-512 and AVX2 and picked at run time; the sums are
//! kept in 16 `f32` lanes over blocks of 1024 logits and the blocks' sums in
//! `f64`, which is also far more accurate than one running `f32` sum over a
//! 150k vocabulary.

use rayon::prelude::*;

use super::kernels::{Mat, matmul_into, matmul_into_strided};

/// Logits per block (about 32 MB of `f32`).
const BLOCK_LOGITS: usize = 1 << 23;
/// Most rows per block.
const BLOCK_ROWS: usize = 1 << 14;
/// Fewest vocabulary columns per block.
const MIN_BLOCK_COLS: usize = 512;

/// Columns of the output per row: log-prob of the target, entropy, most
/// likely id.
pub(crate) const COLUMNS: usize = 3;

/// `[rows, columns]` per block of the `[n, vocab]` logits: all rows (up to
/// 16k) and as many vocabulary columns as fit in 32 MB (at least 512), so each
/// block's product is `[rows, d] · [d, columns]` with many rows (the weight's
/// columns are packed once per row block, not once per few rows).
pub(crate) fn blocks(n: usize, vocab: usize) -> [usize; 2] {
    let rows = n.clamp(1, BLOCK_ROWS);
    let cols = (BLOCK_LOGITS / rows).max(MIN_BLOCK_COLS).min(vocab.max(1));
    [rows, cols]
}

/// What the backward needs from the forward, per row.
#[derive(Debug, Clone)]
pub(crate) struct HeadSaved {
    /// `log Σ exp(z)` of the tempered logits `z`.
    lse: Vec<f32>,
    /// The distribution's entropy.
    entropy: Vec<f32>,
}

/// One row's running statistics over the vocabulary blocks seen so far
/// (an online softmax: sums relative to the running maximum, rescaled when
/// it grows).
#[derive(Clone, Copy)]
struct Running {
    max: f32,
    argmax: usize,
    /// `Σ e^(z−max)`.
    s: f64,
    /// `Σ e^(z−max)·(z−max)`.
    u: f64,
    /// The target's tempered logit, once its block is seen.
    target: f32,
}

/// For row `i` with tempered logits `z = (h_i · w) · inv_temperature`:
/// `[log p(targets[i]), H(p), argmax z]` with `p = softmax(z)` (the id as an
/// `f32`, exact below 2²⁴; the first maximum wins), `[rows, 3]` row-major,
/// and what the backward needs; `[rows, columns]` of the logits at a time.
pub(crate) fn scores(
    h: Mat,
    w: Mat,
    targets: &[u32],
    inv_temperature: f32,
    [block_rows, block_cols]: [usize; 2],
) -> (Vec<f32>, HeadSaved) {
    let ([n, d], [d2, vocab]) = (h.dims(), w.dims());
    assert_eq!(d, d2, "head: hidden [{n}, {d}] · weight [{d2}, {vocab}]");
    assert_eq!(
        targets.len(),
        n,
        "head: {} targets for {n} rows",
        targets.len()
    );
    assert!(vocab < 1 << 24, "head: vocabulary of {vocab} ids");
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        panic!("head: target id {t} ≥ vocabulary {vocab}");
    }
    let (br, bc) = (block_rows.max(1), block_cols.max(1));
    let start = Running {
        max: f32::NEG_INFINITY,
        argmax: 0,
        s: 0.0,
        u: 0.0,
        target: 0.0,
    };
    let mut run = vec![start; n];
    let mut z = vec![0.0f32; br.min(n) * bc.min(vocab)];
    for r0 in (0..n).step_by(br) {
        let rows = br.min(n - r0);
        for c0 in (0..vocab).step_by(bc) {
            let cols = bc.min(vocab - c0);
            let z = &mut z[..rows * cols];
            matmul_into(h.row_block(r0, rows), w.col_block(c0, cols), z, false);
            z.par_chunks_mut(cols)
                .zip(run[r0..r0 + rows].par_iter_mut())
                .enumerate()
                .for_each(|(i, (z, run))| {
                    let target = targets[r0 + i] as usize;
                    let (max, arg) = scale_max(z, inv_temperature);
                    if (c0..c0 + cols).contains(&target) {
                        run.target = z[target - c0];
                    }
                    if max > run.max {
                        // Rescale the sums to the new maximum.
                        if run.s > 0.0 {
                            let shift = f64::from(run.max) - f64::from(max);
                            let f = shift.exp();
                            run.u = (run.u + run.s * shift) * f;
                            run.s *= f;
                        }
                        (run.max, run.argmax) = (max, c0 + arg);
                    }
                    let (s, u) = exp_sums(z, run.max);
                    run.s += s;
                    run.u += u;
                });
        }
    }
    let mut out = vec![0.0f32; n * COLUMNS];
    let mut saved = HeadSaved {
        lse: vec![0.0; n],
        entropy: vec![0.0; n],
    };
    for (i, r) in run.iter().enumerate() {
        let lse = (f64::from(r.max) + r.s.ln()) as f32;
        let entropy = (r.s.ln() - r.u / r.s) as f32;
        (saved.lse[i], saved.entropy[i]) = (lse, entropy);
        out[i * COLUMNS] = r.target - lse;
        out[i * COLUMNS + 1] = entropy;
        out[i * COLUMNS + 2] = r.argmax as f32;
    }
    (out, saved)
}

/// Backward of [`scores`]: from the gradients of each row's log-prob and
/// entropy (`dout`, `[rows, 3]`, the third column ignored), the gradients of
/// `h` (`[rows, d]`) and `w` (`[d, vocab]`). Per row, with `ℓ = log p`:
/// `dz = g_logp·(onehot(target) − p) − g_H·p ⊙ (ℓ + H)` (since
/// `∂H/∂z_k = −p_k·(ℓ_k + H)`), then scaled by the inverse temperature.
pub(crate) fn scores_backward(
    h: Mat,
    w: Mat,
    targets: &[u32],
    inv_temperature: f32,
    saved: &HeadSaved,
    dout: &[f32],
    [block_rows, block_cols]: [usize; 2],
) -> (Vec<f32>, Vec<f32>) {
    let ([n, d], [_, vocab]) = (h.dims(), w.dims());
    assert_eq!(dout.len(), n * COLUMNS, "head: output gradient of [{n}, 3]");
    let (br, bc) = (block_rows.max(1), block_cols.max(1));
    let mut dh = vec![0.0f32; n * d];
    let mut dw = vec![0.0f32; d * vocab];
    let mut z = vec![0.0f32; br.min(n) * bc.min(vocab)];
    for r0 in (0..n).step_by(br) {
        let rows = br.min(n - r0);
        let hb = h.row_block(r0, rows);
        for c0 in (0..vocab).step_by(bc) {
            let cols = bc.min(vocab - c0);
            let wb = w.col_block(c0, cols);
            let z = &mut z[..rows * cols];
            matmul_into(hb, wb, z, false);
            z.par_chunks_mut(cols).enumerate().for_each(|(i, z)| {
                let r = r0 + i;
                let g = RowGrad {
                    logp: dout[r * COLUMNS],
                    entropy: dout[r * COLUMNS + 1],
                    lse: saved.lse[r],
                    h: saved.entropy[r],
                };
                row_backward(z, inv_temperature, g);
                let target = targets[r] as usize;
                if (c0..c0 + cols).contains(&target) {
                    z[target - c0] += g.logp * inv_temperature;
                }
            });
            let dz = Mat::new(z, rows, cols);
            matmul_into(dz, wb.t(), &mut dh[r0 * d..(r0 + rows) * d], c0 > 0);
            matmul_into_strided(hb.t(), dz, &mut dw[c0..], vocab, r0 > 0);
        }
    }
    (dh, dw)
}

/// Lanes of the per-row sums.
const LANES: usize = 16;
/// Logits per block of the per-row sums (64 terms per lane in `f32`).
const BLOCK: usize = 64 * LANES;

/// One row's upstream gradients and saved statistics.
#[derive(Clone, Copy)]
struct RowGrad {
    logp: f32,
    entropy: f32,
    lse: f32,
    h: f32,
}

/// Defines `$name`, which runs `$imp` compiled for AVX-512F, else for AVX2
/// and FMA, else for the baseline target, as the CPU allows (checked at run
/// time), so `$imp`'s loops are vectorised for the machine it runs on.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $imp:ident;) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

multiversion! {
    /// Scales `z` by `inv_t` in place; returns its maximum and where it first is.
    fn scale_max(z: &mut [f32], inv_t: f32) -> (f32, usize) = scale_max_impl;
}

multiversion! {
    /// `(Σ e^(z−max), Σ e^(z−max)·(z−max))`.
    fn exp_sums(z: &[f32], max: f32) -> (f64, f64) = exp_sums_impl;
}

multiversion! {
    /// Overwrites `z` (a row's untempered logits) with the softmax part of its
    /// gradient (the target's one-hot term is the caller's).
    fn row_backward(z: &mut [f32], inv_t: f32, g: RowGrad) = row_backward_impl;
}

#[inline(always)]
fn scale_max_impl(z: &mut [f32], inv_t: f32) -> (f32, usize) {
    let mut m = [f32::NEG_INFINITY; LANES];
    let (chunks, rest) = z.as_chunks_mut::<LANES>();
    for c in chunks.iter_mut() {
        for i in 0..LANES {
            c[i] *= inv_t;
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    for v in rest.iter_mut() {
        *v *= inv_t;
        m[0] = if *v > m[0] { *v } else { m[0] };
    }
    let max = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (max, z.iter().position(|&v| v == max).unwrap_or(0))
}

#[inline(always)]
fn exp_sums_impl(z: &[f32], max: f32) -> (f64, f64) {
    // Each block of `BLOCK` logits is summed in `f32` lanes, the blocks'
    // sums in `f64`.
    let (mut s, mut u) = (0.0f64, 0.0f64);
    for block in z.chunks(BLOCK) {
        let (mut bs, mut bu) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (chunks, rest) = block.as_chunks::<LANES>();
        for c in chunks {
            for i in 0..LANES {
                let x = c[i] - max;
                let e = exp(x);
                bs[i] += e;
                bu[i] += e * x;
            }
        }
        for &v in rest {
            let x = v - max;
            let e = exp(x);
            bs[0] += e;
            bu[0] += e * x;
        }
        s += bs.iter().map(|&v| f64::from(v)).sum::<f64>();
        u += bu.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (s, u)
}

#[inline(always)]
fn row_backward_impl(z: &mut [f32], inv_t: f32, g: RowGrad) {
    for v in z.iter_mut() {
        let logp = *v * inv_t - g.lse;
        let p = exp(logp);
        *v = -(g.logp + g.entropy * (logp + g.h)) * p * inv_t;
    }
}

/// `e^x` in `f32`, branch-free so loops over it vectorise: `x = n·ln 2 + r`
/// with `|r| ≤ ln 2 / 2` (ln 2 split in two parts for an exact reduction),
/// `e^r` by its degree-7 minimax polynomial (Cephes' `expf` coefficients),
/// times `2ⁿ` built in the exponent bits. Relative error about 1e-7 over the
/// clamped range; below −87 it returns about 1e-38 instead of underflowing,
/// which no sum here can tell from zero.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * scale
}

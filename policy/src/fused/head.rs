//! The output head and log-softmax as one kernel: per row the target's
//! log-prob, the entropy and the most likely id, computed over chunks of rows
//! so the `[rows, vocab]` logits never exist whole, forward or backward (the
//! backward computes each chunk's logits again).
//!
//! The per-row passes over the vocabulary (scale, max, exponential sums; the
//! backward's softmax gradient) run on an exponential that the compiler can
//! vectorise, built for AVX-512 and AVX2 and picked at run time; the sums are
//! kept in 16 `f32` lanes over blocks of 1024 logits and the blocks' sums in
//! `f64`, which is also far more accurate than one running `f32` sum over a
//! 150k vocabulary.

use rayon::prelude::*;

use super::kernels::{Mat, matmul_into};

/// Logits per chunk (about 32 MB of `f32`).
const CHUNK_LOGITS: usize = 1 << 23;

/// Columns of the output per row: log-prob of the target, entropy, most
/// likely id.
pub(crate) const COLUMNS: usize = 3;

/// Rows per chunk for a vocabulary of `vocab` (at least 16, at most `rows`).
pub(crate) fn chunk_rows(vocab: usize, rows: usize) -> usize {
    (CHUNK_LOGITS / vocab.max(1)).max(16).min(rows.max(1))
}

/// What the backward needs from the forward, per row.
#[derive(Debug, Clone)]
pub(crate) struct HeadSaved {
    /// `log Σ exp(z)` of the tempered logits `z`.
    lse: Vec<f32>,
    /// The distribution's entropy.
    entropy: Vec<f32>,
}

/// For row `i` with tempered logits `z = (h_i · w) · inv_temperature`:
/// `[log p(targets[i]), H(p), argmax z]` with `p = softmax(z)` (the id as an
/// `f32`, exact below 2²⁴; the first maximum wins), `[rows, 3]` row-major,
/// and what the backward needs. `per` rows at a time.
pub(crate) fn scores(
    h: Mat,
    w: Mat,
    targets: &[u32],
    inv_temperature: f32,
    per: usize,
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
    let mut out = vec![0.0f32; n * COLUMNS];
    let mut saved = HeadSaved {
        lse: vec![0.0; n],
        entropy: vec![0.0; n],
    };
    let per = per.max(1);
    let mut z = vec![0.0f32; per.min(n) * vocab];
    for start in (0..n).step_by(per) {
        let rows = per.min(n - start);
        let z = &mut z[..rows * vocab];
        matmul_into(h.row_block(start, rows), w, z, false);
        z.par_chunks_mut(vocab)
            .zip(out[start * COLUMNS..(start + rows) * COLUMNS].par_chunks_mut(COLUMNS))
            .zip(saved.lse[start..start + rows].par_iter_mut())
            .zip(saved.entropy[start..start + rows].par_iter_mut())
            .enumerate()
            .for_each(|(i, (((z, out), lse), entropy))| {
                let r = row_forward(z, inv_temperature);
                (*lse, *entropy) = (r.lse, r.entropy);
                out[0] = z[targets[start + i] as usize] - r.lse;
                out[1] = r.entropy;
                out[2] = r.argmax as f32;
            });
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
    per: usize,
) -> (Vec<f32>, Vec<f32>) {
    let ([n, d], [_, vocab]) = (h.dims(), w.dims());
    assert_eq!(dout.len(), n * COLUMNS, "head: output gradient of [{n}, 3]");
    let mut dh = vec![0.0f32; n * d];
    let mut dw = vec![0.0f32; d * vocab];
    let per = per.max(1);
    let mut z = vec![0.0f32; per.min(n) * vocab];
    for (chunk, start) in (0..n).step_by(per).enumerate() {
        let rows = per.min(n - start);
        let z = &mut z[..rows * vocab];
        matmul_into(h.row_block(start, rows), w, z, false);
        z.par_chunks_mut(vocab).enumerate().for_each(|(i, z)| {
            let r = start + i;
            let g = RowGrad {
                logp: dout[r * COLUMNS],
                entropy: dout[r * COLUMNS + 1],
                lse: saved.lse[r],
                h: saved.entropy[r],
            };
            row_backward(z, inv_temperature, g);
            z[targets[r] as usize] += g.logp * inv_temperature;
        });
        let dz = Mat::new(z, rows, vocab);
        matmul_into(dz, w.t(), &mut dh[start * d..(start + rows) * d], false);
        matmul_into(h.row_block(start, rows).t(), dz, &mut dw, chunk > 0);
    }
    (dh, dw)
}

/// Lanes of the per-row sums.
const LANES: usize = 16;
/// Logits per block of the per-row sums (64 terms per lane in `f32`).
const BLOCK: usize = 64 * LANES;

/// One row's log-sum-exp, entropy and argmax.
struct RowStats {
    lse: f32,
    entropy: f32,
    argmax: usize,
}

/// One row's upstream gradients and saved statistics.
#[derive(Clone, Copy)]
struct RowGrad {
    logp: f32,
    entropy: f32,
    lse: f32,
    h: f32,
}

/// Scales `z` by `inv_t` in place and returns its statistics.
fn row_forward(z: &mut [f32], inv_t: f32) -> RowStats {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { row_forward_avx512(z, inv_t) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { row_forward_avx2(z, inv_t) };
        }
    }
    row_forward_impl(z, inv_t)
}

/// Overwrites `z` (a row's untempered logits) with the softmax part of its
/// gradient (the target's one-hot term is the caller's).
fn row_backward(z: &mut [f32], inv_t: f32, g: RowGrad) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { row_backward_avx512(z, inv_t, g) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { row_backward_avx2(z, inv_t, g) };
        }
    }
    row_backward_impl(z, inv_t, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_forward_avx512(z: &mut [f32], inv_t: f32) -> RowStats {
    row_forward_impl(z, inv_t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_forward_avx2(z: &mut [f32], inv_t: f32) -> RowStats {
    row_forward_impl(z, inv_t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_backward_avx512(z: &mut [f32], inv_t: f32, g: RowGrad) {
    row_backward_impl(z, inv_t, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_backward_avx2(z: &mut [f32], inv_t: f32, g: RowGrad) {
    row_backward_impl(z, inv_t, g)
}

#[inline(always)]
fn row_forward_impl(z: &mut [f32], inv_t: f32) -> RowStats {
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
    let argmax = z.iter().position(|&v| v == max).unwrap_or(0);
    // s = Σ e^(z−max), u = Σ e^(z−max)·(z−max): lse = max + ln s and
    // H = lse − Σ p·z = ln s − u / s.
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
    RowStats {
        lse: (f64::from(max) + s.ln()) as f32,
        entropy: (s.ln() - u / s) as f32,
        argmax,
    }
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

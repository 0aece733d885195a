//! The fused ops against burn's composed tensor ops: the same values and the
//! same gradients, op by op and through the whole model.

use burn::Tensor;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::silu;
use burn::tensor::{Device, TensorData};

use super::kernels::{self, Mat};
use super::*;
use crate::model::{TokenBatch, Transformer};
use crate::testutil::tiny_config;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 40.0)
        .collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Row-major element access for the naive reference.
fn at(data: &[f32], cols: usize, transposed: bool) -> impl Fn(Mat, usize, usize) -> f32 + '_ {
    move |_, i, j| {
        if transposed {
            data[j * cols + i]
        } else {
            data[i * cols + j]
        }
    }
}

/// More threads than blocks of at least 16: the split rounds its block size
/// up and runs fewer blocks (48 threads over 1024 columns once ran a block
/// past the end).
#[test]
fn split_matmul_with_more_threads_than_blocks_covers_each_column_once() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(20)
        .build()
        .unwrap();
    pool.install(|| {
        for [m, k, n] in [[20, 64, 305], [305, 64, 20]] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let mut want = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                }
            }
            let got = kernels::matmul(Mat::new(&a, m, k), Mat::new(&b, k, n));
            assert_close(&got, &want, 1e-5, &format!("{m}×{k}×{n} on 20 threads"));
        }
    });
}

#[test]
fn fused_ops_run_on_flex_with_and_without_autodiff() {
    assert!(enabled(&Device::flex()));
    assert!(enabled(&Device::flex().autodiff()));
    assert!(!composite(|| enabled(&Device::flex())));
}

#[test]
fn split_matmul_equals_the_naive_product_for_tall_wide_tiny_and_transposed_operands() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        // [m, k, n]: tall (split by rows), wide (split by columns), tiny (one call).
        // [m, k, n]: tall (split by rows, uneven last block), wide (split by
        // columns, uneven), tiny (one call), empty inner dimension.
        for [m, k, n] in [[301, 40, 24], [20, 64, 301], [3, 5, 2], [64, 0, 8]] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let (at_, bt) = (values(k * m, 3), values(n * k, 4));
            let reference = |ta: bool, tb: bool| {
                let (ad, ac) = if ta { (&at_, m) } else { (&a, k) };
                let (bd, bc) = if tb { (&bt, k) } else { (&b, n) };
                let fa = at(ad, ac, ta);
                let fb = at(bd, bc, tb);
                let dummy = Mat::new(&[], 0, 0);
                let mut out = vec![0.0f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        out[i * n + j] = (0..k).map(|p| fa(dummy, i, p) * fb(dummy, p, j)).sum();
                    }
                }
                out
            };
            let ma = Mat::new(&a, m, k);
            let mb = Mat::new(&b, k, n);
            let mat_ = Mat::new(&at_, k, m).t();
            let mbt = Mat::new(&bt, n, k).t();
            assert_close(
                &kernels::matmul(ma, mb),
                &reference(false, false),
                1e-5,
                "a·b",
            );
            assert_close(
                &kernels::matmul(mat_, mbt),
                &reference(true, true),
                1e-5,
                "aᵀ·bᵀ",
            );
            // Accumulating adds the product to what is there.
            let mut acc = vec![1.0f32; m * n];
            kernels::matmul_into(ma, mb, &mut acc, true);
            let want: Vec<f32> = reference(false, false).iter().map(|v| v + 1.0).collect();
            assert_close(&acc, &want, 1e-5, "1 + a·b");
        }
    });
}

/// Runs `f` on fresh tracked inputs, once fused and once composed, and
/// returns (output, input gradients) of each, for a fixed upstream gradient.
fn both<const D: usize, const O: usize>(
    inputs: &[(Vec<f32>, [usize; D])],
    f: impl Fn(&[Tensor<D>]) -> Tensor<O>,
) -> [(Vec<f32>, Vec<Vec<f32>>); 2] {
    let device = Device::flex().autodiff();
    let run = || {
        let xs: Vec<Tensor<D>> = inputs
            .iter()
            .map(|(v, s)| {
                Tensor::<D>::from_data(TensorData::new(v.clone(), *s), &device).require_grad()
            })
            .collect();
        let y = f(&xs);
        let w = Tensor::<O>::from_data(
            TensorData::new(values(y.shape().num_elements(), 9), y.dims()),
            &device,
        );
        let grads = (y.clone() * w).sum().backward();
        let gs = xs.iter().map(|x| host(x.grad(&grads).unwrap())).collect();
        (host(y), gs)
    };
    [run(), composite(run)]
}

fn assert_same([(y1, g1), (y2, g2)]: [(Vec<f32>, Vec<Vec<f32>>); 2], tol: f32, what: &str) {
    assert_close(&y1, &y2, tol, &format!("{what} output"));
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        assert_close(a, b, tol, &format!("{what} gradient {i}"));
    }
}

fn product(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if enabled(&x.device()) {
        matmul(x, w)
    } else {
        x.matmul(w)
    }
}

#[test]
fn fused_matmul_rms_norm_and_swiglu_match_the_composed_ops_in_value_and_gradient() {
    let (n, k, m) = (70, 24, 40);
    assert_same(
        both(
            &[(values(n * k, 1), [n, k]), (values(k * m, 2), [k, m])],
            |x| product(x[0].clone(), x[1].clone()),
        ),
        1e-5,
        "matmul",
    );
    assert_same(
        both(
            &[(values(n * k, 3), [n, k]), (values(k * m, 4), [m, k])],
            |x| product(x[0].clone(), x[1].clone().transpose()),
        ),
        1e-5,
        "matmul by a transposed view",
    );
    // x and gamma (as [1, 1, d]) both tracked: dx and dgamma compared.
    let d = 24;
    assert_same(
        both(
            &[(values(3 * 7 * d, 6), [3, 7, d]), (values(d, 5), [1, 1, d])],
            |x| {
                let gamma = x[1].clone().reshape([d]);
                if enabled(&x[0].device()) {
                    rms_norm(x[0].clone(), gamma, 1e-5)
                } else {
                    // burn::nn::RmsNorm's formula, on a gamma that is not a leaf.
                    let rms = (x[0].clone().square().mean_dim(2) + 1e-5).sqrt();
                    x[0].clone() / rms * gamma.unsqueeze::<3>()
                }
            },
        ),
        1e-5,
        "rms_norm",
    );
    assert_same(
        both(&[(values(n * 2 * m, 7), [n, 2 * m])], |x| {
            if enabled(&x[0].device()) {
                swiglu(x[0].clone())
            } else {
                silu(x[0].clone().narrow(1, 0, m)) * x[0].clone().narrow(1, m, m)
            }
        }),
        1e-5,
        "swiglu",
    );
}

/// Every parameter's gradient, in visiting order.
fn param_grads(model: &Transformer, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
    struct G<'a>(&'a burn::tensor::Gradients, Vec<Vec<f32>>);
    impl ModuleVisitor for G<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.push(host(
                p.val().grad(self.0).expect("every weight gets a gradient"),
            ));
        }
    }
    let mut v = G(grads, Vec::new());
    model.visit(&mut v);
    v.1
}

#[test]
fn fused_model_matches_the_composed_model_in_logits_and_every_gradient() {
    let device = Device::flex().autodiff();
    let rows = [
        vec![1u32, 3, 4, 5, 6, 7, 2],
        vec![1, 6, 3],
        vec![2, 2, 9, 11, 4],
    ];
    let untied = crate::config::ModelConfig {
        tie_embeddings: false,
        ..tiny_config()
    };
    let biased = crate::config::ModelConfig {
        qkv_bias: true,
        o_bias: true,
        ..tiny_config()
    };
    let mut configs = vec![("untied", untied), ("mha+bias", biased)];
    configs.extend(crate::testutil::variant_configs());
    for (name, cfg) in configs {
        let model = crate::testutil::jitter_vectors(Transformer::init(&cfg, &device).unwrap());
        // Right-padded (the learner's layout) and unpadded batches.
        for batch in [
            TokenBatch::right_padded(&rows, 0),
            TokenBatch::right_padded(&rows[..1], 0),
            TokenBatch::left_padded(&rows, 0),
        ] {
            let run = || {
                let logits = model.forward(&batch, None).unwrap();
                let w = Tensor::<3>::from_data(
                    TensorData::new(values(logits.shape().num_elements(), 4), logits.dims()),
                    &device,
                );
                let grads = (logits.clone() * w).sum().backward();
                (host(logits), param_grads(&model, &grads))
            };
            let fused = run();
            let composed = composite(run);
            assert_same(
                [fused, composed],
                2e-4,
                &format!("model ({name}, {} rows)", batch.batch),
            );
        }
    }
}

/// The fused head against logits → log-softmax → gather and entropy, for a
/// head weight given as is and as a transposed view (a tied embedding), with
/// and without a temperature, and with upstream gradients on both the
/// log-probs and the entropies.
#[test]
fn fused_head_scores_match_log_softmax_of_the_logits_in_value_and_gradient() {
    let (n, d, vocab) = (70, 8, 3000);
    let targets: Arc<Vec<u32>> = Arc::new((0..n).map(|i| (i * 7919 % vocab) as u32).collect());
    for (tied, temperature) in [(false, 1.0f32), (true, 0.7)] {
        let w_shape = if tied { [vocab, d] } else { [d, vocab] };
        let results = both(
            &[
                (values(n * d, 11), [n, d]),
                (values(d * vocab, 12), w_shape),
            ],
            |x| {
                let w = if tied {
                    x[1].clone().transpose()
                } else {
                    x[1].clone()
                };
                if enabled(&x[0].device()) {
                    let s = head_scores(x[0].clone(), w, targets.clone(), 1.0 / temperature);
                    s.narrow(1, 0, 2)
                } else {
                    let logits = x[0].clone().matmul(w).reshape([1, n, vocab]);
                    let (logp, ent) = crate::loss::token_logprobs(logits, &targets, temperature);
                    Tensor::cat(vec![logp.reshape([n, 1]), ent.reshape([n, 1])], 1)
                }
            },
        );
        assert_same(
            results,
            1e-4,
            &format!("head (tied {tied}, temperature {temperature})"),
        );
    }
    // The id column is the argmax of the logits.
    let device = Device::flex();
    let h = Tensor::<2>::from_data(TensorData::new(values(n * d, 3), [n, d]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(values(d * 50, 4), [d, 50]), &device);
    let ids = host(head_scores(h.clone(), w.clone(), Arc::new(vec![0; n]), 1.0).narrow(1, 2, 1));
    let want: Vec<i64> = h
        .matmul(w)
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    let ids: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
    assert_eq!(ids, want);
}

/// Blocks of the logits give what one block gives, forward and backward; and
/// on a Qwen-sized vocabulary (152k) the log-probs and entropies are those of
/// an `f64` softmax.
#[test]
fn fused_head_in_blocks_equals_one_block_and_an_f64_softmax() {
    let (n, d, vocab) = (37, 8, 152_064);
    let (h, w) = (values(n * d, 5), values(d * vocab, 6));
    let targets: Vec<u32> = (0..n).map(|i| (i * 4099 % vocab) as u32).collect();
    let (hm, wm) = (Mat::new(&h, n, d), Mat::new(&w, d, vocab));
    let inv_t = 1.0 / 0.9;
    let dout = values(n * head::COLUMNS, 7);
    let run = |blocks: [usize; 2]| {
        let (out, saved) = head::scores(hm, wm, &targets, inv_t, blocks);
        let (dh, dw) = head::scores_backward(hm, wm, &targets, inv_t, &saved, &dout, blocks);
        (out, dh, dw)
    };
    let (one, dh1, dw1) = run([n, vocab]);
    // Uneven blocks of rows and of the vocabulary (the online softmax and
    // the argmax carried across 31 column blocks, the gradients accumulated).
    for blocks in [[16, 5000], [n, 512], head::blocks(n, vocab)] {
        let (blocked, dh2, dw2) = run(blocks);
        assert_close(
            &blocked,
            &one,
            1e-6,
            &format!("outputs in blocks of {blocks:?}"),
        );
        assert_close(&dh2, &dh1, 1e-5, &format!("dh in blocks of {blocks:?}"));
        assert_close(&dw2, &dw1, 1e-5, &format!("dw in blocks of {blocks:?}"));
    }
    for i in 0..n {
        let z: Vec<f64> = (0..vocab)
            .map(|j| {
                (0..d)
                    .map(|k| f64::from(h[i * d + k]) * f64::from(w[k * vocab + j]))
                    .sum::<f64>()
                    * f64::from(inv_t)
            })
            .collect();
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let entropy: f64 = -z.iter().map(|v| (v - lse).exp() * (v - lse)).sum::<f64>();
        let logp = z[targets[i] as usize] - lse;
        let (got_logp, got_h) = (f64::from(one[i * 3]), f64::from(one[i * 3 + 1]));
        assert!(
            (got_logp - logp).abs() < 1e-5,
            "row {i}: log-prob {got_logp} vs {logp}"
        );
        assert!(
            (got_h - entropy).abs() < 1e-5 * entropy.max(1.0),
            "row {i}: entropy {got_h} vs {entropy}"
        );
    }
}

/// The vectorisable exponential against `f64::exp`.
#[test]
fn fast_exp_is_within_a_few_ulp_of_exp() {
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let x = -87.0 + 175.0 * i as f32 / 200_000.0;
        let want = f64::from(x).exp();
        let got = f64::from(head::exp(x));
        worst = worst.max(((got - want) / want).abs());
    }
    assert!(worst < 4e-7, "relative error {worst:.2e}");
    assert_eq!(head::exp(0.0), 1.0);
    assert!(head::exp(-1e4) < 1e-37 && head::exp(f32::NEG_INFINITY) < 1e-37);
}

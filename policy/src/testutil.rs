//! Tiny models shared by the unit tests.

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::model::Transformer;

/// A 2-layer, d_model 16, 2-head model over 12 ids: fast enough for any test.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        d_ff: Some(32),
        max_len: 48,
        init_std: 0.2,
        init_seed: 7,
        ..ModelConfig::new(12)
    }
}

/// The tiny model without autodiff.
pub fn tiny_model() -> Transformer {
    Transformer::init(&tiny_config(), &Device::flex()).unwrap()
}

/// Row-major `[batch, len, vocab]` logits on the host.
pub fn host3(t: burn::Tensor<3>) -> (Vec<f32>, [usize; 3]) {
    let dims = t.dims();
    (t.into_data().try_into_vec::<f32>().unwrap(), dims)
}

/// The tiny model in each architectural variant the loader builds, its gains
/// and biases jittered (fresh ones start at 1 and 0, which would hide them):
/// plain multi-head attention; grouped-query attention with q/k/v biases
/// (Qwen2); per-head q/k norms with a head width apart from `d_model / n_heads`
/// (Qwen3); Llama-3's rotary scaling with an output bias.
pub fn variants() -> Vec<(&'static str, Transformer)> {
    variant_configs()
        .into_iter()
        .map(|(name, cfg)| {
            let model = Transformer::init(&cfg, &Device::flex()).unwrap();
            (name, jitter_vectors(model))
        })
        .collect()
}

/// The configs of [`variants`].
pub fn variant_configs() -> Vec<(&'static str, ModelConfig)> {
    let base = tiny_config();
    vec![
        ("mha", base.clone()),
        (
            "gqa+bias",
            ModelConfig {
                n_heads: 4,
                n_kv_heads: Some(2),
                qkv_bias: true,
                tie_embeddings: false,
                ..base.clone()
            },
        ),
        (
            "qk-norm",
            ModelConfig {
                n_heads: 4,
                n_kv_heads: Some(1),
                head_dim: Some(6),
                qk_norm: true,
                ..base.clone()
            },
        ),
        (
            "llama3-rope",
            ModelConfig {
                n_kv_heads: Some(1),
                o_bias: true,
                rope_theta: 500_000.0,
                rope_scaling: Some(crate::config::Llama3Rope {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 16.0,
                }),
                ..base
            },
        ),
    ]
}

/// Every 1-D weight (norm gains, biases) set to deterministic values around
/// its own.
pub fn jitter_vectors(model: Transformer) -> Transformer {
    let mut w = crate::optim::weights(&model);
    for (i, t) in w.iter_mut().enumerate() {
        if t.shape.len() == 1 {
            for (j, v) in t.data.iter_mut().enumerate() {
                *v += (((i * 31 + j * 17) % 23) as f32 - 11.0) / 20.0;
            }
        }
    }
    crate::optim::load_weights(model, &w).unwrap()
}

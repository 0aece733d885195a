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

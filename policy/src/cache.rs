//! The key/value cache of incremental decoding, and the host-side bookkeeping
//! (which slots are real, the next position id of each row) that makes
//! left-padded batches decode correctly.
//!
//! Keys and values are appended per layer; row `b`'s keys at padded slots are
//! masked out of every later query, and position ids count only real tokens,
//! so a left-padded row sees exactly what it would see unpadded.

use burn::Tensor;

/// Per-layer keys and values of the tokens decoded so far.
///
/// # Shapes
/// - keys, values of each layer: `[batch, n_kv_heads, past_len, head_dim]`
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// `valid[b][t]`: slot `t` of row `b` holds a real token (not padding).
    pub(crate) valid: Vec<Vec<bool>>,
    /// Position id the next real token of each row gets.
    pub(crate) next_pos: Vec<usize>,
}

impl KvCache {
    /// An empty cache for `batch` rows of a model with `n_layers` blocks.
    pub fn new(n_layers: usize, batch: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            valid: vec![Vec::new(); batch],
            next_pos: vec![0; batch],
        }
    }

    /// Number of slots (real or padding) held per row.
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows in the cache.
    pub fn batch(&self) -> usize {
        self.valid.len()
    }
}

/// Positions and attention mask for `new_valid` appended after a cache's slots.
///
/// Returns position ids `[batch × new_len]` and the mask
/// `[batch × new_len × (past_len + new_len)]` (true = may NOT attend). A query
/// attends to real keys at or before its own slot, and always to itself, so a
/// padding query has one finite score and never produces NaN.
pub(crate) fn layout(
    past_valid: &[Vec<bool>],
    next_pos: &[usize],
    new_valid: &[bool],
    batch: usize,
    new_len: usize,
) -> (Vec<usize>, Vec<bool>, Vec<usize>) {
    let past_len = past_valid.first().map_or(0, Vec::len);
    let total = past_len + new_len;
    let mut positions = Vec::with_capacity(batch * new_len);
    let mut mask = Vec::with_capacity(batch * new_len * total);
    let mut next = Vec::with_capacity(batch);
    for b in 0..batch {
        let row_new = &new_valid[b * new_len..(b + 1) * new_len];
        let mut pos = next_pos.get(b).copied().unwrap_or(0);
        for &v in row_new {
            positions.push(pos);
            if v {
                pos += 1;
            }
        }
        next.push(pos);
        let key_valid = |k: usize| {
            if k < past_len {
                past_valid[b][k]
            } else {
                row_new[k - past_len]
            }
        };
        for q in 0..new_len {
            let q_abs = past_len + q;
            for k in 0..total {
                let allowed = k == q_abs || (k < q_abs && key_valid(k));
                mask.push(!allowed);
            }
        }
    }
    (positions, mask, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_shifts_positions_and_masks_pads() {
        // Row 0: [pad, a, b]; row 1: [a, b, c].
        let valid = [false, true, true, true, true, true];
        let (pos, mask, next) = layout(&[vec![], vec![]], &[0, 0], &valid, 2, 3);
        assert_eq!(pos, vec![0, 0, 1, 0, 1, 2]);
        assert_eq!(next, vec![2, 3]);
        // Row 0, query 1 ('a'): may see itself only, not the pad before it.
        assert_eq!(&mask[3..6], &[true, false, true]);
        // Row 0, query 0 (pad): sees itself so its softmax stays finite.
        assert_eq!(&mask[0..3], &[false, true, true]);
    }
}

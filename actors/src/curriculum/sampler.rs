//! The deterministic sampler: pools of problems per (domain, bucket), each walked in a
//! seeded permutation per epoch (without replacement within an epoch), chosen by weight.
//!
//! The serialisable part is [`SamplerState`]: the ChaCha RNG that picks pools, and one
//! [`Cursor`] (epoch, position) per pool. A pool's order for an epoch is a function of the
//! seed, the pool's name and the epoch, so it needs no storing: restoring the cursor and the
//! RNG reproduces the same future draws exactly. The order is shuffled lazily, one swap per
//! draw, so a draw's cost does not grow with the pool (a million problems cost what ten
//! thousand do, bar one copy of the member list per epoch).

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::import::fields::fnv1a64;

/// Where a pool's walk stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Completed passes over the pool.
    pub epoch: u64,
    /// Next position in this epoch's order.
    pub pos: u32,
}

/// What a sampler must save to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Picks pools and replay draws.
    pub rng: ChaCha8Rng,
    /// One cursor per pool name (`math/easy`; replay walks are `replay:math/easy`).
    pub cursors: BTreeMap<String, Cursor>,
}

impl SamplerState {
    /// A fresh state for `seed`.
    pub fn new(seed: u64) -> Self {
        SamplerState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            cursors: BTreeMap::new(),
        }
    }
}

/// One walk's order in its current epoch, shuffled lazily: positions before `ready` are
/// final (a Fisher–Yates shuffle run forward, one swap per position drawn), so a draw costs
/// O(1) whatever the pool's size; a restored cursor replays the swaps up to its position,
/// so the order is rebuilt exactly.
#[derive(Debug)]
struct Order {
    epoch: u64,
    order: Vec<u32>,
    rng: ChaCha8Rng,
    ready: u32,
}

impl Order {
    fn new(seed: u64, walk: &str, epoch: u64, members: &[u32]) -> Order {
        Order {
            epoch,
            order: members.to_vec(),
            rng: ChaCha8Rng::seed_from_u64(
                seed ^ fnv1a64(walk.as_bytes()) ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            ready: 0,
        }
    }

    /// The member at `pos` of this epoch's order.
    fn at(&mut self, pos: u32) -> u32 {
        let n = self.order.len() as u32;
        while self.ready <= pos {
            let j = self.rng.random_range(self.ready..n);
            self.order.swap(self.ready as usize, j as usize);
            self.ready += 1;
        }
        self.order[pos as usize]
    }
}

/// Pools and their cached orders; [`SamplerState`] holds what changes.
#[derive(Debug)]
pub struct Pools {
    seed: u64,
    /// Members of each pool (problem indices, sorted by problem id).
    members: BTreeMap<String, Vec<u32>>,
    /// The current epoch's order of each walk, rebuilt on demand (after a restore, the
    /// first draw replays the swaps up to the cursor).
    orders: HashMap<String, Order>,
}

impl Pools {
    /// Pools from `(name, members)`; members must be sorted by problem id for determinism.
    pub fn new(seed: u64, members: BTreeMap<String, Vec<u32>>) -> Self {
        Pools {
            seed,
            members,
            orders: HashMap::new(),
        }
    }

    /// Members of a pool (empty for an unknown one).
    pub fn members(&self, pool: &str) -> &[u32] {
        self.members.get(pool).map_or(&[], Vec::as_slice)
    }

    /// All pools with their members.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<u32>)> {
        self.members.iter()
    }

    /// Next member of `pool` on the walk `walk` (the pool's name, or `replay:` + name) that
    /// `skip` does not reject; starts a new epoch at the end of one. `None` when every member
    /// is skipped.
    pub fn next(
        &mut self,
        state: &mut SamplerState,
        pool: &str,
        walk: &str,
        skip: &dyn Fn(u32) -> bool,
    ) -> Option<u32> {
        let members = self.members.get(pool)?;
        let n = members.len() as u32;
        if n == 0 {
            return None;
        }
        let cursor = state.cursors.entry(walk.to_string()).or_default();
        // Two full passes: enough to find any unskipped member from any position.
        for _ in 0..2 * n {
            if cursor.pos >= n {
                cursor.epoch += 1;
                cursor.pos = 0;
            }
            let order = match self.orders.get_mut(walk) {
                Some(o) if o.epoch == cursor.epoch => o,
                _ => {
                    let o = Order::new(self.seed, walk, cursor.epoch, members);
                    self.orders.insert(walk.to_string(), o);
                    self.orders.get_mut(walk).expect("just inserted")
                }
            };
            let i = order.at(cursor.pos);
            cursor.pos += 1;
            if !skip(i) {
                return Some(i);
            }
        }
        None
    }
}

/// Picks an index with probability proportional to its weight (weights ≥ 0, some > 0).
pub fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, w) in weights.iter().enumerate() {
        if *w <= 0.0 {
            continue;
        }
        last = Some(i);
        if x < *w {
            return Some(i);
        }
        x -= w;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_visits_every_member_once() {
        let mut pools = Pools::new(
            3,
            BTreeMap::from([("math/easy".to_string(), (0..10).collect())]),
        );
        let mut st = SamplerState::new(3);
        let mut epochs: Vec<Vec<u32>> = Vec::new();
        for _ in 0..3 {
            let mut e: Vec<u32> = (0..10)
                .map(|_| {
                    pools
                        .next(&mut st, "math/easy", "math/easy", &|_| false)
                        .unwrap()
                })
                .collect();
            let order = e.clone();
            e.sort();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
            epochs.push(order);
        }
        assert_ne!(epochs[0], epochs[1], "epochs are reshuffled");
        let mut none = Pools::new(3, BTreeMap::from([("p".to_string(), vec![1, 2])]));
        assert_eq!(none.next(&mut st, "p", "p", &|_| true), None);
    }

    #[test]
    fn a_restored_state_continues_the_same_walk_mid_epoch() {
        let members = BTreeMap::from([("p".to_string(), (0..1000).collect::<Vec<u32>>())]);
        let mut pools = Pools::new(9, members.clone());
        let mut st = SamplerState::new(9);
        let draw = |pools: &mut Pools, st: &mut SamplerState| {
            pools.next(st, "p", "p", &|i| i % 7 == 0).unwrap()
        };
        let before: Vec<u32> = (0..400).map(|_| draw(&mut pools, &mut st)).collect();
        let saved = st.clone();
        let after: Vec<u32> = (0..1500).map(|_| draw(&mut pools, &mut st)).collect();
        // A fresh process: new pools (no cached orders), the saved state.
        let mut fresh = Pools::new(9, members);
        let mut st2 = saved;
        let again: Vec<u32> = (0..1500).map(|_| draw(&mut fresh, &mut st2)).collect();
        assert_eq!(after, again);
        assert_eq!(st, st2);
        assert!(before.iter().chain(&after).all(|i| i % 7 != 0));
    }

    #[test]
    fn weights_pick_proportionally() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[pick_weighted(&mut rng, &[1.0, 0.0, 3.0]).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = f64::from(counts[2]) / 30_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }
}

//! The exactly-once ledger: where every group of rollouts is in its life.
//!
//! A *group* is one prompt sampled `group_size` times; it is the unit GRPO
//! learns from. Each group moves through
//! `dispatched → generated → graded → learned`, and the ledger refuses any other
//! order. When an actor crashes, the runtime asks the ledger what was in flight
//! ([`Ledger::in_flight`]) and redoes exactly that; a group already `learned`
//! can never be learned again ([`LedgerError::AlreadyLearned`]). The ledger is
//! saved inside every checkpoint, so after `kill -9` a resumed run knows which
//! groups its weights already contain.
//!
//! Ids are plain numbers handed out in order, so a restored ledger continues
//! the sequence without collisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Identifier of a group (one prompt, `group_size` responses).
pub type GroupId = u64;

/// Where a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Handed to the generator.
    Dispatched,
    /// Responses sampled; waiting for rewards.
    Generated,
    /// Every response has a reward; waiting for the learner.
    Graded,
    /// The learner applied an update containing this group.
    Learned,
    /// Set aside without learning (all rewards equal under dynamic sampling, or
    /// older than the staleness bound). Terminal, like `Learned`.
    Dropped,
}

/// One group's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The problem the group samples.
    pub prompt_id: String,
    /// Current phase.
    pub phase: Phase,
    /// How many times work on this group was redone after a crash.
    pub redone: u32,
    /// The learner step that learned it, once learned.
    pub learned_at: Option<u64>,
}

/// Refused transitions: each one would break exactly-once.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("group {0} is not in the ledger")]
    Unknown(GroupId),
    #[error("group {id} cannot move from {from:?} to {to:?}")]
    BadTransition { id: GroupId, from: Phase, to: Phase },
    #[error("group {id} was already learned at step {step}; refusing to learn it twice")]
    AlreadyLearned { id: GroupId, step: u64 },
}

/// Counts per phase, for `/status` and the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub dispatched: u64,
    pub generated: u64,
    pub graded: u64,
    pub learned: u64,
    pub dropped: u64,
    /// Sum of `redone` over all groups.
    pub redone: u64,
}

/// The ledger itself. Terminal groups are kept (they are what proves that
/// nothing was learned twice); a long run can [`Ledger::compact`] them into
/// the totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    next_id: GroupId,
    open: BTreeMap<GroupId, Entry>,
    closed: BTreeMap<GroupId, Entry>,
    compacted: Totals,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a new group for `prompt_id` as dispatched and returns its id.
    pub fn dispatch(&mut self, prompt_id: impl Into<String>) -> GroupId {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Entry {
                prompt_id: prompt_id.into(),
                phase: Phase::Dispatched,
                redone: 0,
                learned_at: None,
            },
        );
        id
    }

    /// Marks the group's responses as sampled.
    pub fn generated(&mut self, id: GroupId) -> Result<(), LedgerError> {
        self.advance(id, Phase::Dispatched, Phase::Generated)
    }

    /// Marks every response of the group as graded.
    pub fn graded(&mut self, id: GroupId) -> Result<(), LedgerError> {
        self.advance(id, Phase::Generated, Phase::Graded)
    }

    /// Marks the group as learned at `step`. Fails if it was learned before.
    pub fn learned(&mut self, id: GroupId, step: u64) -> Result<(), LedgerError> {
        if let Some(e) = self.closed.get(&id)
            && let Some(at) = e.learned_at
        {
            return Err(LedgerError::AlreadyLearned { id, step: at });
        }
        self.advance(id, Phase::Graded, Phase::Learned)?;
        let e = self.closed.get_mut(&id).expect("advance closed it");
        e.learned_at = Some(step);
        Ok(())
    }

    /// Sets a graded or generated group aside without learning it.
    pub fn dropped(&mut self, id: GroupId) -> Result<(), LedgerError> {
        let Some(e) = self.open.get(&id) else {
            return Err(self.unknown_or_closed(id, Phase::Dropped));
        };
        if e.phase == Phase::Dispatched {
            return Err(LedgerError::BadTransition {
                id,
                from: e.phase,
                to: Phase::Dropped,
            });
        }
        let mut e = self.open.remove(&id).expect("present");
        e.phase = Phase::Dropped;
        self.closed.insert(id, e);
        Ok(())
    }

    /// Counts a redo of the group's current phase (after a crash).
    pub fn redo(&mut self, id: GroupId) -> Result<(), LedgerError> {
        let e = self.open.get_mut(&id).ok_or(LedgerError::Unknown(id))?;
        e.redone += 1;
        Ok(())
    }

    /// Groups not yet learned or dropped, with their phase, oldest first.
    pub fn in_flight(&self) -> impl Iterator<Item = (GroupId, &Entry)> {
        self.open.iter().map(|(id, e)| (*id, e))
    }

    /// Looks a group up, open or closed.
    pub fn get(&self, id: GroupId) -> Option<&Entry> {
        self.open.get(&id).or_else(|| self.closed.get(&id))
    }

    /// Every group still held (open and closed, not compacted), by id.
    pub fn entries(&self) -> impl Iterator<Item = (GroupId, &Entry)> {
        self.open
            .iter()
            .chain(self.closed.iter())
            .map(|(id, e)| (*id, e))
    }

    /// The next id [`Ledger::dispatch`] hands out (every id below it was handed out once).
    pub fn next_id(&self) -> GroupId {
        self.next_id
    }

    /// Counts per phase, compacted groups included.
    pub fn totals(&self) -> Totals {
        let mut t = self.compacted.clone();
        for e in self.open.values().chain(self.closed.values()) {
            t.dispatched += 1;
            t.redone += u64::from(e.redone);
            match e.phase {
                Phase::Dispatched => {}
                Phase::Generated => t.generated += 1,
                Phase::Graded => t.graded += 1,
                Phase::Learned => t.learned += 1,
                Phase::Dropped => t.dropped += 1,
            }
        }
        t
    }

    /// Folds closed groups whose id is below `before` into the totals, so a
    /// run of days keeps a bounded ledger. Those ids can no longer be checked
    /// individually, but they are below every id still handed out.
    pub fn compact(&mut self, before: GroupId) {
        let keep = self.closed.split_off(&before);
        let old = std::mem::replace(&mut self.closed, keep);
        for e in old.into_values() {
            self.compacted.dispatched += 1;
            self.compacted.redone += u64::from(e.redone);
            match e.phase {
                Phase::Learned => self.compacted.learned += 1,
                _ => self.compacted.dropped += 1,
            }
        }
    }

    /// Keeps the newest `keep` closed groups one by one and folds the older
    /// ones into the totals ([`Ledger::compact`]), so the ledger (and every
    /// checkpoint, which holds it) stays bounded however long a run lasts.
    /// Open groups are never folded.
    pub fn compact_keeping(&mut self, keep: usize) {
        if self.closed.len() <= keep {
            return;
        }
        let before = *self
            .closed
            .keys()
            .nth(self.closed.len() - keep)
            .expect("more than `keep` closed groups");
        self.compact(before);
    }

    fn advance(&mut self, id: GroupId, from: Phase, to: Phase) -> Result<(), LedgerError> {
        if !self.open.contains_key(&id) {
            return Err(self.unknown_or_closed(id, to));
        }
        let e = self.open.get_mut(&id).expect("checked above");
        if e.phase != from {
            return Err(LedgerError::BadTransition {
                id,
                from: e.phase,
                to,
            });
        }
        e.phase = to;
        if to == Phase::Learned {
            let e = self.open.remove(&id).expect("present");
            self.closed.insert(id, e);
        }
        Ok(())
    }

    fn unknown_or_closed(&self, id: GroupId, to: Phase) -> LedgerError {
        match self.closed.get(&id) {
            Some(e) if e.phase == Phase::Learned && to == Phase::Learned => {
                LedgerError::AlreadyLearned {
                    id,
                    step: e.learned_at.unwrap_or_default(),
                }
            }
            Some(e) => LedgerError::BadTransition {
                id,
                from: e.phase,
                to,
            },
            None => LedgerError::Unknown(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_walks_the_phases_in_order_and_is_learned_once() {
        let mut l = Ledger::new();
        let g = l.dispatch("p1");
        assert_eq!(
            l.graded(g),
            Err(LedgerError::BadTransition {
                id: g,
                from: Phase::Dispatched,
                to: Phase::Graded
            })
        );
        l.generated(g).unwrap();
        l.graded(g).unwrap();
        l.learned(g, 7).unwrap();
        assert_eq!(
            l.learned(g, 8),
            Err(LedgerError::AlreadyLearned { id: g, step: 7 })
        );
        assert_eq!(l.in_flight().count(), 0);
        assert_eq!(l.totals().learned, 1);
    }

    #[test]
    fn in_flight_lists_what_a_crash_must_redo() {
        let mut l = Ledger::new();
        let a = l.dispatch("p1");
        let b = l.dispatch("p2");
        let c = l.dispatch("p3");
        l.generated(a).unwrap();
        l.generated(b).unwrap();
        l.graded(b).unwrap();
        l.learned(b, 1).unwrap();
        l.redo(a).unwrap();
        let open: Vec<_> = l.in_flight().map(|(id, e)| (id, e.phase)).collect();
        assert_eq!(open, vec![(a, Phase::Generated), (c, Phase::Dispatched)]);
        assert_eq!(l.totals().redone, 1);
    }

    #[test]
    fn ids_continue_after_a_serde_round_trip() {
        let mut l = Ledger::new();
        l.dispatch("p1");
        let bytes = serde_json::to_vec(&l).unwrap();
        let mut back: Ledger = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.dispatch("p2"), 1);
    }

    #[test]
    fn compaction_keeps_totals() {
        let mut l = Ledger::new();
        for i in 0..10 {
            let g = l.dispatch(format!("p{i}"));
            l.generated(g).unwrap();
            if i % 2 == 0 {
                l.graded(g).unwrap();
                l.learned(g, i).unwrap();
            } else {
                l.dropped(g).unwrap();
            }
        }
        let before = l.totals();
        l.compact(6);
        assert_eq!(l.totals(), before);
        assert!(l.get(2).is_none() && l.get(8).is_some());
    }

    /// Found by the soak (issue 18): every group stayed in the ledger, so RSS and
    /// each checkpoint's runtime.bin grew with every step of a long run.
    #[test]
    fn compaction_keeping_the_newest_bounds_the_ledger_and_spares_open_groups() {
        let mut l = Ledger::new();
        let open = l.dispatch("open");
        for i in 0..1000u64 {
            let g = l.dispatch(format!("p{i}"));
            l.generated(g).unwrap();
            l.graded(g).unwrap();
            l.learned(g, i).unwrap();
            l.compact_keeping(100);
        }
        let t = l.totals();
        assert_eq!((t.dispatched, t.learned), (1001, 1000));
        assert_eq!(l.entries().count(), 101, "100 closed and the open one");
        assert!(l.get(open).is_some() && l.get(1000).is_some() && l.get(900).is_none());
        assert!(matches!(
            l.learned(1000, 5),
            Err(LedgerError::AlreadyLearned { .. })
        ));
        l.generated(open).unwrap();
    }
}

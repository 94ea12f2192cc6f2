//! Property tests of the sync rules under concurrency and hostile input, in the fleet's
//! real topology: depots push to the cloud through the cloud's push check
//! (`rules::check_authored`) and its change store (keyed by `records::change_key`), and
//! pull from it; depots never talk to each other.
//!
//! Generators beyond `convergence.rs`: record identity (every depot creates several
//! records with identical fields, so their first changes are byte-identical), several
//! concurrent cloud edits of one record (each admin request loads the same state and
//! edits with its own actor, as the cloud does), cloud writes of a value an earlier
//! conflict made lose, changes forged with the cloud's actor tag, and malformed
//! (non-scalar) changes mixed into pushes. Failing cases are kept in
//! `hostile.proptest-regressions` beside this file and committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use automerge::{transaction::Transactable, AutoCommit, ObjType, ROOT};
use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::records::change_key;
use garasi_sync_protocol::rules::check_authored;
use proptest::prelude::*;

const DEPOTS: usize = 2;
const RECORDS: usize = 3;
const TYPE: &str = "vehicle_status";

/// The cloud: a change store keyed as the real one, and a materialised doc per record.
struct Cloud {
    /// (depot, change key) -> (record, change), as `changes` with UNIQUE (depot, key).
    store: BTreeMap<(usize, [u8; 32]), (usize, Vec<u8>)>,
    docs: Vec<Vec<Record>>,
    refused: usize,
}

struct Depot {
    actor: ActorId,
    docs: Vec<Record>,
    /// Unacknowledged outbox: (record, change).
    outbox: Vec<(usize, Vec<u8>)>,
}

fn rid(r: usize) -> String {
    format!("bus-{r}")
}

impl Cloud {
    fn new() -> Self {
        Cloud {
            store: BTreeMap::new(),
            docs: (0..DEPOTS)
                .map(|_| {
                    (0..RECORDS)
                        .map(|_| Record::new(new_actor(Side::Cloud)))
                        .collect()
                })
                .collect(),
            refused: 0,
        }
    }

    /// The push route: every change checked, then stored idempotently and folded.
    fn push(&mut self, depot: usize, batch: &[(usize, Vec<u8>)]) -> bool {
        if batch
            .iter()
            .any(|(_, c)| check_authored(c, Side::Depot).is_err())
        {
            self.refused += 1;
            return false; // the whole batch is refused; nothing stored
        }
        for (r, c) in batch {
            self.store_change(depot, *r, c.clone());
        }
        true
    }

    /// INSERT OR IGNORE by (depot, change key), as the real stores do; the materialised
    /// doc folds only what was stored, as the materialiser does.
    fn store_change(&mut self, depot: usize, r: usize, c: Vec<u8>) {
        let key = (depot, change_key(TYPE, &rid(r), &c));
        if let std::collections::btree_map::Entry::Vacant(v) = self.store.entry(key) {
            v.insert((r, c.clone()));
            self.docs[depot][r].apply(&[c]).unwrap();
        }
    }

    /// `n` admin requests at once on one record: each loads the same materialised state
    /// and edits with a fresh cloud actor; every change is stored.
    fn concurrent_edits(&mut self, depot: usize, r: usize, values: &[FieldValue]) {
        let snapshot = self.docs[depot][r].save();
        let mut changes = Vec::new();
        for v in values {
            let mut rec = Record::load(&snapshot, new_actor(Side::Cloud)).unwrap();
            changes.push(rec.set(&[("status", v.clone())]).unwrap().unwrap());
        }
        for c in changes {
            self.store_change(depot, r, c);
        }
    }

    /// Everything stored for one depot, in a subset (`mask`) and order.
    fn pull(&self, depot: usize, mask: u64, reverse: bool) -> Vec<(usize, Vec<u8>)> {
        let mut out: Vec<(usize, Vec<u8>)> = self
            .store
            .range((depot, [0u8; 32])..=(depot, [0xff; 32]))
            .enumerate()
            .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
            .map(|(_, (_, v))| v.clone())
            .collect();
        if reverse {
            out.reverse();
        }
        out
    }
}

impl Depot {
    /// Every record created with identical fields by one actor: byte-identical changes.
    fn new() -> Self {
        let actor = new_actor(Side::Depot);
        let mut docs = Vec::new();
        let mut outbox = Vec::new();
        for r in 0..RECORDS {
            let mut d = Record::new(actor.clone());
            let c = d
                .set(&[("status", FieldValue::Text("in_service".into()))])
                .unwrap()
                .unwrap();
            outbox.push((r, c));
            docs.push(d);
        }
        assert_eq!(outbox[0].1, outbox[1].1, "first changes are byte-identical");
        Depot {
            actor,
            docs,
            outbox,
        }
    }

    fn edit(&mut self, r: usize, field: &str, v: FieldValue) {
        let c = self.docs[r].set(&[(field, v)]).unwrap().unwrap();
        self.outbox.push((r, c));
    }

    /// A crafted change the depot sends without keeping: forged cloud tag or a text object.
    fn crafted(&mut self, r: usize, forged: bool) -> (usize, Vec<u8>) {
        let saved = self.docs[r].save();
        if forged {
            let mut fake = Record::load(&saved, new_actor(Side::Cloud)).unwrap();
            let c = fake
                .set(&[("status", FieldValue::Text("forged".into()))])
                .unwrap()
                .unwrap();
            return (r, c);
        }
        let mut doc = AutoCommit::load(&saved)
            .unwrap()
            .with_actor(self.actor.clone());
        doc.put_object(ROOT, "status", ObjType::Text).unwrap();
        let c = doc.get_last_local_change().unwrap().bytes().into_owned();
        (r, c)
    }

    fn pull(&mut self, changes: &[(usize, Vec<u8>)]) {
        for (r, c) in changes {
            self.docs[*r].apply(std::slice::from_ref(c)).unwrap();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    DepotEdit {
        depot: usize,
        r: usize,
        field: usize,
        value: i64,
    },
    /// A push of the first `take` outbox entries, maybe with a crafted change mixed in.
    Push {
        depot: usize,
        take: usize,
        crafted: Option<bool>,
    },
    Pull {
        depot: usize,
        mask: u64,
        reverse: bool,
    },
    CloudEdits {
        depot: usize,
        r: usize,
        values: Vec<i64>,
    },
}

const FIELDS: [&str; 3] = ["status", "note", "bay"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..DEPOTS, 0..RECORDS, 0..FIELDS.len(), 0i64..4).prop_map(|(depot, r, field, value)| {
            Op::DepotEdit {
                depot,
                r,
                field,
                value,
            }
        }),
        (0..DEPOTS, 1usize..6, prop::option::of(any::<bool>())).prop_map(
            |(depot, take, crafted)| Op::Push {
                depot,
                take,
                crafted
            }
        ),
        (0..DEPOTS, any::<u64>(), any::<bool>()).prop_map(|(depot, mask, reverse)| Op::Pull {
            depot,
            mask,
            reverse
        }),
        (0..DEPOTS, 0..RECORDS, prop::collection::vec(0i64..4, 1..4))
            .prop_map(|(depot, r, values)| Op::CloudEdits { depot, r, values }),
    ]
}

fn push(
    cloud: &mut Cloud,
    d: &mut Depot,
    depot: usize,
    take: usize,
    crafted: Option<bool>,
    r: usize,
) {
    let n = take.min(d.outbox.len());
    let mut batch: Vec<_> = d.outbox[..n].to_vec();
    if let Some(forged) = crafted {
        batch.push(d.crafted(r, forged));
    }
    if cloud.push(depot, &batch) {
        d.outbox.drain(..n);
    } else {
        // The depot's honest part is re-sent without the crafted change.
        assert!(crafted.is_some(), "an honest batch was refused");
        assert!(cloud.push(depot, &d.outbox[..n]));
        d.outbox.drain(..n);
    }
}

/// Link back: every outbox drained, every depot pulls everything.
fn settle(cloud: &mut Cloud, depots: &mut [Depot]) {
    for (i, d) in depots.iter_mut().enumerate() {
        let all = d.outbox.len();
        push(cloud, d, i, all, None, 0);
        let changes = cloud.pull(i, u64::MAX, false);
        d.pull(&changes);
    }
}

fn assert_same(cloud: &mut Cloud, depots: &mut [Depot]) {
    for (i, d) in depots.iter_mut().enumerate() {
        for r in 0..RECORDS {
            let (c, e) = (&mut cloud.docs[i][r], &mut d.docs[r]);
            assert_eq!(
                c.visible().unwrap(),
                e.visible().unwrap(),
                "depot {i} record {r}"
            );
            let (mut hc, mut he) = (c.heads(), e.heads());
            hc.sort();
            he.sort();
            assert_eq!(hc, he, "depot {i} record {r} holds other changes");
            assert_eq!(c.missing_deps(), 0);
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random depot edits, partial pushes with forged and malformed changes mixed in,
    /// partial reordered pulls, concurrent cloud edits: afterwards every replica of every
    /// record is identical, no honest change was lost (records with byte-identical
    /// changes included), and nothing crafted was stored.
    #[test]
    fn hostile_pushes_never_lose_fork_or_stall(ops in prop::collection::vec(op(), 1..40)) {
        let mut cloud = Cloud::new();
        let mut depots: Vec<Depot> = (0..DEPOTS).map(|_| Depot::new()).collect();
        let mut crafted = 0usize;
        for op in &ops {
            match op.clone() {
                Op::DepotEdit { depot, r, field, value } => {
                    depots[depot].edit(r, FIELDS[field], FieldValue::Int(value));
                }
                Op::Push { depot, take, crafted: c } => {
                    crafted += usize::from(c.is_some());
                    push(&mut cloud, &mut depots[depot], depot, take, c, take % RECORDS);
                }
                Op::Pull { depot, mask, reverse } => {
                    let changes = cloud.pull(depot, mask, reverse);
                    depots[depot].pull(&changes);
                }
                Op::CloudEdits { depot, r, values } => {
                    let v: Vec<FieldValue> = values.into_iter().map(FieldValue::Int).collect();
                    cloud.concurrent_edits(depot, r, &v);
                }
            }
        }
        settle(&mut cloud, &mut depots);
        assert_same(&mut cloud, &mut depots);
        prop_assert_eq!(cloud.refused, crafted, "every crafted change was refused");
        // Every record of every depot exists at the cloud, though their first changes
        // were byte-identical.
        for (i, d) in depots.iter_mut().enumerate() {
            for r in 0..RECORDS {
                prop_assert!(!d.docs[r].heads().is_empty());
                prop_assert_eq!(cloud.docs[i][r].visible().unwrap().contains_key("status"), true);
            }
        }
    }

    /// Rounds of partitions: the depot writes `status` (several times), the cloud writes
    /// it concurrently, from one or several admin requests at once, with values drawn
    /// from everything written before (so it often writes a value that lost an earlier
    /// conflict). Crafted pushes come along. After each round's sync the status is one of
    /// that round's cloud values, on every replica.
    #[test]
    fn cloud_wins_every_round(
        rounds in prop::collection::vec(
            (prop::collection::vec(0i64..3, 1..3), prop::collection::vec(0i64..3, 1..3), any::<bool>(), any::<bool>()),
            1..8),
    ) {
        let mut cloud = Cloud::new();
        let mut depots: Vec<Depot> = (0..DEPOTS).map(|_| Depot::new()).collect();
        settle(&mut cloud, &mut depots);
        for (depot_values, cloud_values, concurrent, forge) in rounds {
            for v in &depot_values {
                depots[0].edit(0, "status", FieldValue::Int(*v));
            }
            let cloud_fv: Vec<FieldValue> = cloud_values.iter().map(|v| FieldValue::Int(*v)).collect();
            if concurrent {
                cloud.concurrent_edits(0, 0, &cloud_fv);
            } else {
                for v in &cloud_fv {
                    cloud.concurrent_edits(0, 0, std::slice::from_ref(v));
                }
            }
            let n = depots[0].outbox.len();
            push(&mut cloud, &mut depots[0], 0, n, Some(forge), 0);
            settle(&mut cloud, &mut depots);
            assert_same(&mut cloud, &mut depots);
            let shown = cloud.docs[0][0].visible().unwrap()["status"].clone();
            let allowed: Vec<FieldValue> = if concurrent { cloud_fv.clone() } else { vec![cloud_fv.last().unwrap().clone()] };
            prop_assert!(allowed.contains(&shown), "shown {:?}, cloud wrote {:?}, depot wrote {:?}", shown, cloud_fv, depot_values);
        }
    }
}

//! Replica identity. Every automerge change carries its actor id; Garasi encodes in the
//! first byte whether the actor is the cloud or a depot, because the merge rule depends
//! on it and must be computable from the document alone, identically everywhere.
//!
//! The tag can be trusted because of where changes enter: every change a depot sends
//! passes the cloud's push check ([`crate::rules::check_authored`] with [`Side::Depot`]),
//! which refuses any change not tagged as a depot's, and depots receive changes only from
//! the cloud. So a change tagged cloud was made by the cloud, whatever a depot sends.
//! The cloud uses a fresh actor for every edit it makes, so two concurrent cloud edits
//! can never reuse one (actor, seq) pair (a fork automerge cannot apply).

pub use automerge::ActorId;
use rand::RngCore;

const CLOUD_TAG: u8 = 0xC1;
const DEPOT_TAG: u8 = 0xD1;

/// Who wrote a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Cloud,
    Depot,
}

/// A fresh actor id for one replica of one side: a tag byte plus 15 random bytes. Each
/// process (and each restart) uses a new one, so actors never collide.
pub fn new_actor(side: Side) -> ActorId {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = match side {
        Side::Cloud => CLOUD_TAG,
        Side::Depot => DEPOT_TAG,
    };
    ActorId::from(&bytes[..])
}

/// The side an actor belongs to; unknown tags count as depot (they can never win a
/// conflict against the cloud by accident).
pub fn side_of(actor: &ActorId) -> Side {
    match actor.to_bytes().first() {
        Some(&CLOUD_TAG) => Side::Cloud,
        _ => Side::Depot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        assert_eq!(side_of(&new_actor(Side::Cloud)), Side::Cloud);
        assert_eq!(side_of(&new_actor(Side::Depot)), Side::Depot);
        assert_ne!(new_actor(Side::Depot), new_actor(Side::Depot));
        assert_eq!(side_of(&ActorId::from(&[0x01u8, 2, 3][..])), Side::Depot);
    }
}

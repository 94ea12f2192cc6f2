//! Fuzz harness (issue 11, "Keep it attacked") for badge reader lines: the serial byte
//! stream goes through `dispatch::badge::LineSplitter`, then each line through the
//! badge rule (`people::valid_badge`) and digest (`people::badge_digest`) that the
//! sign-on look-up uses. Arbitrary bytes in arbitrary chunks never panic; lines are
//! bounded and free of line ends; how the stream is chunked does not change the lines;
//! a valid badge's digest is 64 hex digits and ignores case and surrounding spaces.
//!
//! 256 cases per property in `cargo test`; PROPTEST_CASES for long local runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use garasi_edge::modules::dispatch::badge::LineSplitter;
use garasi_sync_protocol::people::{badge_digest, valid_badge};
use proptest::prelude::*;

/// `badge.rs`'s MAX_LINE: longer lines are one error, never kept.
const MAX_LINE: usize = 256;

/// Cases per property: small for CI, PROPTEST_CASES for long runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Reader output: badge-like runs, noise, line ends and occasional very long runs.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => "[0-9A-Fa-f-]{1,20}".prop_map(String::into_bytes),
            2 => Just(b"\r\n".to_vec()),
            2 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            2 => proptest::collection::vec(any::<u8>(), 0..16),
            1 => (200usize..700).prop_map(|n| vec![b'x'; n]),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// Lines of `bytes` fed in pieces cut at `cuts`.
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Result<String, ()>> {
    let mut s = LineSplitter::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([bytes.len()]) {
        s.push(&bytes[at..c], |l| out.push(l));
        at = c;
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lines_are_bounded_and_chunking_does_not_matter(
        bytes in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = split(&bytes, &[]);
        let pieces = split(&bytes, &cuts);
        prop_assert_eq!(&whole, &pieces);
        for line in whole.iter().flatten() {
            prop_assert!(!line.is_empty() && line.len() <= MAX_LINE);
            prop_assert!(!line.contains(['\r', '\n']));
            // What dispatch does next with a line: the rule, then the digest.
            let badge = line.trim();
            if valid_badge(badge) {
                let d = badge_digest(badge);
                prop_assert_eq!(d.len(), 64);
                prop_assert!(d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                prop_assert_eq!(&d, &badge_digest(&badge.to_ascii_lowercase()));
                prop_assert_eq!(&d, &badge_digest(&format!("  {badge}\t")));
            } else {
                // Anything else on a line is noise: never a badge.
                prop_assert!(
                    badge.len() < 4
                        || badge.len() > 64
                        || !badge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                );
            }
        }
    }

    /// Arbitrary bytes in arbitrary chunks: no panic, and the splitter's state never
    /// grows past one line.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
        for line in split(&bytes, &cuts).into_iter().flatten() {
            prop_assert!(line.len() <= MAX_LINE);
        }
    }

    #[test]
    fn badge_rule_and_digest_never_panic(s in "\\PC{0,80}|[ -~]{0,80}") {
        let _ = valid_badge(&s);
        let _ = badge_digest(&s);
    }
}

//! The rules edge and cloud share about people: the depot roles, what a badge and a PIN
//! look like, and the badge digest. A badge number is an identifier printed on a card,
//! not a secret, but it must not travel in clear through sync payloads and logs; the
//! depot finds a person by the digest of the scanned badge.

use blake2::{Blake2b512, Digest};

/// Roles scoped to one depot.
pub const ROLES: &[&str] = &["dispatcher", "driver", "mechanic", "depot_manager"];

pub fn valid_role(r: &str) -> bool {
    ROLES.contains(&r)
}

/// 4-64 ASCII letters, digits or '-': what badge readers (barcode, RFID UID in hex)
/// send. Anything else on a reader line is noise, not a badge.
pub fn valid_badge(b: &str) -> bool {
    (4..=64).contains(&b.len()) && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// 4-8 digits.
pub fn valid_pin(p: &str) -> bool {
    (4..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit())
}

/// Lower-case hex digest of a badge (case-insensitive: readers differ in hex case).
pub fn badge_digest(badge: &str) -> String {
    let mut h = Blake2b512::new();
    h.update(b"garasi-badge-v1:");
    h.update(badge.trim().to_ascii_uppercase().as_bytes());
    let out = h.finalize();
    out[..32].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_rules() {
        assert!(valid_badge("04A1B2C3"));
        assert!(valid_badge("EMP-0042"));
        for bad in ["", "abc", "04 A1", "x;DROP", &"9".repeat(65)] {
            assert!(!valid_badge(bad), "{bad}");
        }
        assert_eq!(badge_digest("04a1b2c3"), badge_digest("04A1B2C3"));
        assert_ne!(badge_digest("04A1B2C3"), badge_digest("04A1B2C4"));
        assert_eq!(badge_digest("x").len(), 64);
    }

    #[test]
    fn pin_and_role_rules() {
        assert!(valid_pin("1234") && valid_pin("12345678"));
        assert!(!valid_pin("123") && !valid_pin("12a4") && !valid_pin("123456789"));
        assert!(valid_role("driver") && !valid_role("admin"));
    }
}

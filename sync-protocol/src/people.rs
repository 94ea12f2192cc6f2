//! The rules edge and cloud share about people: the depot roles, what a badge and a PIN
//! look like, and the badge digest. A badge number is an identifier printed on a card,
//! not a secret, but it must not travel in clear through sync payloads and logs; the
//! depot finds a person by the digest of the scanned badge.

use argon2::password_hash::{PasswordHasher, SaltString};
use blake2::{Blake2b512, Digest};
use rand::RngCore;

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

/// Everything wrong with a person as given (empty when it is fine). The cloud's API and
/// a standalone depot's CLI both check with this, so they accept the same people.
pub fn problems(
    id: &str,
    name: &str,
    roles: &[String],
    password: Option<&str>,
    pin: Option<&str>,
    badge: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    if !crate::ids::valid_id(id) {
        out.push(format!(
            "person id {id:?} is invalid: use 1-64 letters, digits, '-' or '_'"
        ));
    }
    if name.trim().is_empty() {
        out.push("name must not be empty".into());
    }
    if let Some(p) = crate::text::problem("name", name, crate::text::NAME_CHARS, false) {
        out.push(p);
    }
    if roles.is_empty() || !roles.iter().all(|r| valid_role(r)) {
        out.push(format!("roles must be one or more of {}", ROLES.join(", ")));
    }
    if password.is_some_and(|pw| pw.chars().count() < 10) {
        out.push("a password needs at least 10 characters".into());
    }
    if pin.is_some_and(|p| !valid_pin(p)) {
        out.push("a PIN is 4 to 8 digits".into());
    }
    if badge.is_some_and(|b| !valid_badge(b)) {
        out.push("a badge number is 4-64 letters, digits or '-'".into());
    }
    out
}

/// argon2id with the crate's defaults (OWASP: 19 MiB, 2 passes) for what people type:
/// passwords and PINs are low-entropy, so guessing each must be expensive.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
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
    fn person_problems_are_all_listed() {
        let ok = problems(
            "drv-1",
            "Budi",
            &["driver".into()],
            None,
            Some("2468"),
            Some("04A1B2C3"),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let bad = problems(
            "x/y",
            " ",
            &["pilot".into()],
            Some("short"),
            Some("12a"),
            Some("a b"),
        );
        assert_eq!(bad.len(), 6, "{bad:?}");
        let h = hash_secret("2468").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
    }

    #[test]
    fn pin_and_role_rules() {
        assert!(valid_pin("1234") && valid_pin("12345678"));
        assert!(!valid_pin("123") && !valid_pin("12a4") && !valid_pin("123456789"));
        assert!(valid_role("driver") && !valid_role("admin"));
    }
}

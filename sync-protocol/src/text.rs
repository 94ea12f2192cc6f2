//! Limits on free text that people type (names, labels, plates, notes), shared by edge
//! and cloud so both refuse the same things: too long, control characters, and the
//! Unicode bidirectional overrides that make a name display as something else.

/// Longest person name, vehicle label and the like, in characters.
pub const NAME_CHARS: usize = 120;
/// Longest licence plate, in characters.
pub const PLATE_CHARS: usize = 32;
/// Longest note (e.g. why a vehicle is out of service), in characters.
pub const NOTE_CHARS: usize = 500;

/// Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// What is wrong with `value` as the field `field` (None when it is fine). A note may
/// hold line breaks and tabs; a name may not.
pub fn problem(field: &str, value: &str, max_chars: usize, multiline: bool) -> Option<String> {
    let n = value.chars().count();
    if n > max_chars {
        return Some(format!(
            "{field} is {n} characters long: use at most {max_chars}"
        ));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t' || c == '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Some(format!(
            "{field} contains control characters: use printable text only"
        ));
    }
    if value.chars().any(bidi_control) {
        return Some(format!(
            "{field} contains bidirectional override characters (U+202A-U+202E, U+2066-U+2069): remove them"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_controls_and_bidi_overrides() {
        assert_eq!(problem("name", "Budi Santoso", NAME_CHARS, false), None);
        assert_eq!(
            problem("note", "rem aus\nlihat buku", NOTE_CHARS, true),
            None
        );
        assert!(problem("name", &"a".repeat(121), NAME_CHARS, false).is_some());
        // 120 multi-byte characters are fine: the limit counts characters.
        assert_eq!(problem("name", &"é".repeat(120), NAME_CHARS, false), None);
        assert!(problem("name", "Budi\nSantoso", NAME_CHARS, false).is_some());
        assert!(problem("name", "Budi\u{0}", NAME_CHARS, false).is_some());
        assert!(problem("note", "x\u{1b}[2J", NOTE_CHARS, true).is_some());
        assert!(problem("name", "admin\u{202E}nimda", NAME_CHARS, false).is_some());
        assert!(problem("name", "a\u{2067}b", NAME_CHARS, false).is_some());
    }
}

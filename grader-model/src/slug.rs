//! Hashed slugs: names squeezed under a length limit that stay unique by ending in a hash.
//!
//! Kubernetes object names are limited (63 characters for most), so long names are cut and
//! given a suffix from the SHA-256 of the whole name. Semantics follow Grader Service's
//! `generate_hashed_slug`, including its quirks: lengths count Unicode code points, and the
//! shortened result is lowercased (with Python's `str.lower`, which can lengthen a string).

use sha2::{Digest, Sha256};

/// The usual Kubernetes name limit (DNS-1123 label).
pub const DEFAULT_LIMIT: usize = 63;
/// Hash characters appended to a shortened slug by default.
pub const DEFAULT_HASH_LENGTH: usize = 6;
/// A SHA-256 hex digest has 64 characters, so no longer hash can be taken from it.
pub const MAX_HASH_LENGTH: usize = 64;

/// Parameters for which the reference silently produces a malformed slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// With no hash a shortened slug would end in `-` and lose its uniqueness.
    #[error("invalid hash_length {hash_length}: must be at least 1")]
    ZeroHashLength { hash_length: usize },
    /// The hex digest is only 64 characters long.
    #[error("invalid hash_length {hash_length}: must be at most {MAX_HASH_LENGTH}")]
    HashLengthTooLong { hash_length: usize },
    /// The prefix kept from the slug would be empty (or, in the reference, wrapped around).
    #[error("invalid limit {limit}: must be greater than hash_length + 1 = {}", hash_length + 1)]
    LimitTooSmall { limit: usize, hash_length: usize },
}

/// Returns `slug` unchanged when it has fewer than `limit - hash_length` code points, and
/// otherwise its first `limit - hash_length - 1` code points, `-` and the first `hash_length`
/// hex digits of the SHA-256 of `slug`, lowercased as Python's `str.lower` would.
///
/// For ASCII input the result never exceeds `limit` code points; lowercasing a few non-ASCII
/// characters (e.g. 'İ') adds code points, exactly as in the reference.
pub fn hashed_slug(slug: &str, limit: usize, hash_length: usize) -> Result<String, SlugError> {
    if hash_length == 0 {
        return Err(SlugError::ZeroHashLength { hash_length });
    }
    if hash_length > MAX_HASH_LENGTH {
        return Err(SlugError::HashLengthTooLong { hash_length });
    }
    if limit <= hash_length + 1 {
        return Err(SlugError::LimitTooSmall { limit, hash_length });
    }
    Ok(shorten(slug, limit, hash_length))
}

/// [`hashed_slug`] with the reference defaults ([`DEFAULT_LIMIT`], [`DEFAULT_HASH_LENGTH`]).
pub fn hashed_slug_default(slug: &str) -> String {
    shorten(slug, DEFAULT_LIMIT, DEFAULT_HASH_LENGTH)
}

/// [`hashed_slug`] for parameters already checked (`0 < hash_length <= 64`, `limit > hash_length + 1`).
fn shorten(slug: &str, limit: usize, hash_length: usize) -> String {
    if slug.chars().count() < limit - hash_length {
        return slug.to_owned();
    }
    let keep = limit - hash_length - 1;
    let cut = slug.char_indices().nth(keep).map_or(slug.len(), |(i, _)| i);
    let digest = sha256_hex(slug);
    let joined = format!("{}-{}", &slug[..cut], &digest[..hash_length]);
    python_lower(&joined)
}

/// Lowercase hex SHA-256 of the UTF-8 bytes of `s` (64 ASCII characters).
pub fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Python 3.11's `str.lower`.
///
/// Rust's `str::to_lowercase` applies the same full mappings (`'İ'` → `"i\u{307}"`) and the
/// same Final_Sigma rule, but from a newer Unicode version than Python 3.11's 14.0. The
/// characters that gained a lowercase mapping since then are left unchanged here, as Python
/// does. (A final-sigma context made of such newer characters may still differ.)
pub(crate) fn python_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    // Non-sigma characters map independently of context, so the Rust result can be walked
    // alongside the input, taking its context-dependent choice for every 'Σ'.
    let rust = s.to_lowercase();
    let mut rust_chars = rust.chars();
    let mut out = String::with_capacity(rust.len());
    for c in s.chars() {
        let produced = if c == 'Σ' { 1 } else { c.to_lowercase().len() };
        if unchanged_by_python311(c) {
            out.push(c);
            rust_chars.by_ref().take(produced).for_each(drop);
        } else {
            out.extend(rust_chars.by_ref().take(produced));
        }
    }
    out
}

/// Uppercase letters added after Unicode 14.0 (Python 3.11), which Python leaves as they are.
fn unchanged_by_python311(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1C89
            | 0xA7CB
            | 0xA7CC
            | 0xA7CE
            | 0xA7D2
            | 0xA7D4
            | 0xA7DA
            | 0xA7DC
            | 0x10D50..=0x10D65
            | 0x16EA0..=0x16EB8
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_parameters_the_reference_mishandles() {
        assert_eq!(
            hashed_slug("abc", 63, 0),
            Err(SlugError::ZeroHashLength { hash_length: 0 })
        );
        assert_eq!(
            hashed_slug("abc", 100, 65),
            Err(SlugError::HashLengthTooLong { hash_length: 65 })
        );
        assert_eq!(
            hashed_slug("abc", 7, 6),
            Err(SlugError::LimitTooSmall {
                limit: 7,
                hash_length: 6
            })
        );
        assert_eq!(
            hashed_slug("abc", 3, 6),
            Err(SlugError::LimitTooSmall {
                limit: 3,
                hash_length: 6
            })
        );
        assert!(hashed_slug("abc", 8, 6).is_ok());
        assert!(hashed_slug("abc", 100, 64).is_ok());
    }

    #[test]
    fn errors_name_parameter_and_value() {
        let msg = hashed_slug("x", 5, 4).unwrap_err().to_string();
        assert!(
            msg.contains("limit 5") && msg.contains("hash_length + 1 = 5"),
            "{msg}"
        );
        let msg = hashed_slug("x", 80, 70).unwrap_err().to_string();
        assert!(msg.contains("hash_length 70"), "{msg}");
        let msg = hashed_slug("x", 80, 0).unwrap_err().to_string();
        assert!(msg.contains("hash_length 0"), "{msg}");
    }

    #[test]
    fn boundary_between_kept_and_shortened() {
        let below = "a".repeat(56);
        assert_eq!(hashed_slug(&below, 63, 6).as_deref(), Ok(below.as_str()));
        let at = "A".repeat(57);
        let out = hashed_slug(&at, 63, 6).unwrap_or_default();
        assert_eq!(out.len(), 63);
        assert!(out.starts_with(&"a".repeat(56)));
        assert_eq!(&out[56..57], "-");
        assert_eq!(&out[57..], &sha256_hex(&at)[..6]);
    }

    #[test]
    fn sha256_hex_matches_known_digest() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn python_lower_special_cases() {
        assert_eq!(python_lower("ΑΣ"), "ας");
        assert_eq!(python_lower("ΣΑ"), "σα");
        assert_eq!(python_lower("AΣ.-x"), "aς.-x");
        assert_eq!(python_lower("İx"), "i\u{307}x");
        assert_eq!(python_lower("ǅ"), "ǆ");
        assert_eq!(python_lower("\u{212A}"), "k");
        assert_eq!(python_lower("\u{1C89}x"), "\u{1C89}x");
        assert_eq!(python_lower("x\u{10D50}"), "x\u{10D50}");
    }
}

//! Names of autograding pods: the reference's `autograde-job-{user}-{id}`, made always valid.

use crate::slug::{python_lower, sha256_hex};

const PREFIX: &str = "autograde-job-";
/// Longest DNS-1123 label.
const MAX_LABEL: usize = 63;
/// The reference cuts the sanitized username to this many characters.
const MAX_USERNAME: usize = 50;
/// Hex digits of SHA-256(username) used when the reference name cannot be used.
const HASH_LENGTH: usize = 8;

/// The name of the pod grading submission `submission_id` of `username`.
///
/// The reference sanitizes the username (Python `lower()`, runs of characters other than
/// `[a-zA-Z0-9]` replaced by `-`, cut to 50 characters, `-` trimmed) and returns
/// `autograde-job-{sanitized}-{submission_id}`. That name is returned unchanged whenever the
/// sanitized username is non-empty and the name is a valid DNS-1123 label of at most 63
/// characters.
///
/// Otherwise (the username sanitizes to nothing, e.g. empty or all non-ASCII, or the name is
/// too long for the id) the name is `autograde-job-{head}-{hash}-{submission_id}` where `hash`
/// is the first 8 hex digits of SHA-256 of the original username, so different usernames
/// stay distinct, and `head` is the sanitized username cut (then `-`-trimmed) to fit 63
/// characters, left out with its dash when empty: `autograde-job-{hash}-{submission_id}`.
pub fn pod_name(username: &str, submission_id: u64) -> String {
    let sanitized = sanitize(username);
    let id = submission_id.to_string();

    let reference_user = sanitized
        .get(..MAX_USERNAME)
        .unwrap_or(&sanitized)
        .trim_matches('-');
    if !reference_user.is_empty() {
        let name = format!("{PREFIX}{reference_user}-{id}");
        if is_dns1123_label(&name) {
            return name;
        }
    }

    let hash = &sha256_hex(username)[..HASH_LENGTH];
    // Room left for "{head}-" once prefix, hash and "-{id}" are placed (at least 20 chars,
    // as a u64 has at most 20 digits).
    let room = MAX_LABEL - PREFIX.len() - HASH_LENGTH - 1 - id.len();
    let head = sanitized
        .get(..room - 1)
        .unwrap_or(&sanitized)
        .trim_matches('-');
    if head.is_empty() {
        format!("{PREFIX}{hash}-{id}")
    } else {
        format!("{PREFIX}{head}-{hash}-{id}")
    }
}

/// Whether `s` is a DNS-1123 label (RFC 1123, as Kubernetes checks pod names): 1 to 63
/// characters from `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_LABEL
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// The reference's sanitizing before the cut: Python-lowercased, every run of characters
/// other than `[a-zA-Z0-9]` replaced by one `-`. The result is ASCII.
fn sanitize(username: &str) -> String {
    let lowered = python_lower(username);
    let mut out = String::with_capacity(lowered.len());
    let mut in_run = false;
    for c in lowered.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names() {
        assert_eq!(pod_name("alice", 1), "autograde-job-alice-1");
        assert_eq!(
            pod_name("Alice.Smith@uni.at", 42),
            "autograde-job-alice-smith-uni-at-42"
        );
        assert_eq!(pod_name("--Bob--", 7), "autograde-job-bob-7");
        assert_eq!(pod_name("\u{212A}elvin", 3), "autograde-job-kelvin-3");
        assert_eq!(pod_name("İlker", 3), "autograde-job-i-lker-3");
    }

    #[test]
    fn empty_and_unicode_usernames_get_distinct_hashes() {
        let a = pod_name("", 5);
        let b = pod_name("ñü", 5);
        let c = pod_name("日本", 5);
        assert_eq!(a, format!("autograde-job-{}-5", &sha256_hex("")[..8]));
        assert!(a != b && b != c && a != c);
        for name in [a, b, c] {
            assert!(is_dns1123_label(&name), "{name}");
        }
    }

    #[test]
    fn long_names_are_shortened_with_hash() {
        let user = "a".repeat(49);
        let name = pod_name(&user, 1);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("autograde-job-aaaa"));
        assert!(name.ends_with(&format!("-{}-1", &sha256_hex(&user)[..8])));
        let name = pod_name(&"x".repeat(100), u64::MAX);
        assert!(is_dns1123_label(&name), "{name}");
        assert!(name.ends_with(&u64::MAX.to_string()));
    }

    #[test]
    fn the_longest_reference_name_that_fits_is_kept() {
        let user = "b".repeat(47);
        assert_eq!(pod_name(&user, 1), format!("autograde-job-{user}-1"));
        assert_eq!(pod_name(&user, 1).len(), 63);
    }

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "0", "a-b", "a--b", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }
}

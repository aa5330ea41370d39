//! Names that become paths: a job's lecture code and username, and the configured work-dir
//! parents. Each is checked to be plain before it is joined to a directory, so nothing a job or
//! a configuration says can resolve outside the service directory.

use std::path::{Component, Path};

/// A name from a job that would escape its directory or is not a usable path component.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("refusing {field} {value:?}: {why}")]
pub struct UnsafePath {
    /// Which job field held the name (`lecture.code`, `submission.username`, ...).
    pub field: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Checks that `value` is one plain path component (no separators, `.`/`..`, NUL or control
/// characters) so that joining it to a directory stays inside that directory.
pub fn check_component(field: &'static str, value: &str) -> Result<(), UnsafePath> {
    let fail = |why| {
        Err(UnsafePath {
            field,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value == "." || value == ".." {
        return fail("it names a directory itself or its parent");
    }
    if value.contains(['/', '\\']) {
        return fail("it contains a path separator");
    }
    if value.chars().any(char::is_control) {
        return fail("it contains NUL or a control character");
    }
    if value.len() > 255 {
        return fail("it is longer than 255 bytes");
    }
    Ok(())
}

/// Checks a configured path relative to `service_dir` (such as `convert_in`): relative, and
/// made of normal components only.
pub fn check_relative(field: &'static str, value: &str) -> Result<(), UnsafePath> {
    let fail = |why| {
        Err(UnsafePath {
            field,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() || value.contains('\0') {
        return fail("it is empty or contains NUL");
    }
    // Split by hand: `Path::components` would quietly drop a `.` or an empty segment in the
    // middle, and the text is used as it is (a pod's `subPath`).
    if value
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return fail(
            "it must be a plain relative path such as `convert_in` (no leading `/`, no `.`, `..` or empty segments)",
        );
    }
    Ok(())
}

/// True when `path`, read lexically, stays within `root` (no `..` climbing out).
pub fn lexically_inside(root: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    let mut depth: usize = 0;
    for c in rest.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dirs_are_plain_relative_paths() {
        for bad in [
            "../x",
            "/abs",
            "a/../b",
            "",
            "./convert_in",
            "a/./b",
            "a//b",
            "a/",
        ] {
            assert!(check_relative("relative_input_path", bad).is_err(), "{bad}");
        }
        assert!(check_relative("relative_input_path", "data/convert_in").is_ok());
    }

    #[test]
    fn components_are_single_plain_names() {
        for bad in ["..", ".", "", "a/b", "a\\b", "a\0b", "x\ny"] {
            let err = check_component("submission.username", bad).unwrap_err();
            assert_eq!(err.field, "submission.username");
        }
        assert!(check_component("submission.username", "alice-2").is_ok());
    }

    #[test]
    fn lexical_containment() {
        assert!(lexically_inside(Path::new("/a"), Path::new("/a/b/../c")));
        assert!(!lexically_inside(Path::new("/a"), Path::new("/a/../b")));
        assert!(!lexically_inside(Path::new("/a"), Path::new("/b")));
    }
}

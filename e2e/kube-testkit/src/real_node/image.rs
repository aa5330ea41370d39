//! Where the grading image of `deploy/image/build.sh` is: the one answer the real-node tests,
//! the kit's own tests and the benchmark share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The grading image to load into the real node's containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingImage {
    /// The image reference pods name (`GRADER_GRADING_IMAGE`).
    pub name: String,
    /// Its OCI archive, imported with `ctr images import` (`GRADER_GRADING_IMAGE_ARCHIVE`).
    pub archive: PathBuf,
}

/// The grading image: `GRADER_GRADING_IMAGE` and `GRADER_GRADING_IMAGE_ARCHIVE` when both are
/// set, else what `bash deploy/image/build.sh --print` under `repo` reports as built. `None`
/// when it is not built (the caller skips or fails); an error when the script cannot run.
pub fn grading_image(repo: &Path) -> std::io::Result<Option<GradingImage>> {
    if let (Ok(name), Ok(archive)) = (
        std::env::var("GRADER_GRADING_IMAGE"),
        std::env::var("GRADER_GRADING_IMAGE_ARCHIVE"),
    ) {
        return Ok(Some(GradingImage {
            name,
            archive: archive.into(),
        }));
    }
    let out = Command::new("bash")
        .arg(repo.join("deploy/image/build.sh"))
        .arg("--print")
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| parse_print(&String::from_utf8_lossy(&out.stdout)))
        .flatten())
}

/// The image in the `KEY=value` lines `build.sh --print` writes.
fn parse_print(text: &str) -> Option<GradingImage> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(GradingImage {
        name: get("GRADER_GRADING_IMAGE")?,
        archive: get("GRADER_GRADING_IMAGE_ARCHIVE")?.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_print_lines_give_the_image_and_its_archive_not_a_prefix_match() {
        let text = "GRADER_GRADING_IMAGE_ARCHIVE=/c/g.oci.tar\nGRADER_GRADING_IMAGE=g:1\n";
        assert_eq!(
            parse_print(text),
            Some(GradingImage {
                name: "g:1".into(),
                archive: "/c/g.oci.tar".into()
            })
        );
        assert_eq!(parse_print("GRADER_GRADING_IMAGE=g:1\n"), None);
    }
}

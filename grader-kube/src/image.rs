//! Which image grades a submission: an optional image config file, else a name template.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use grader_model::ImageNameTemplate;

use crate::error::KubeError;

/// What the image config says for one lecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LectureImage {
    /// One image for every assignment of the lecture.
    Image(String),
    /// An image per assignment name; assignments not listed use the default template.
    PerAssignment(BTreeMap<String, String>),
}

/// The image config: lecture code → image, or lecture code → (assignment name → image).
///
/// ```yaml
/// cs101: registry.example/cs101:2026
/// ml:
///   "Assignment 1": registry.example/ml-a1:latest
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    path: Option<PathBuf>,
    lectures: BTreeMap<String, LectureImage>,
}

impl ImageConfig {
    /// Reads the image config file at `path`; `None` gives an empty config (every lecture uses
    /// the default template).
    ///
    /// A file that cannot be read or parsed is an error naming the file; a value of the wrong
    /// shape is an error naming its key. `.json` files are parsed as JSON, others as YAML
    /// (which also reads JSON).
    pub fn load(path: Option<&Path>) -> Result<ImageConfig, KubeError> {
        let Some(path) = path else {
            return Ok(ImageConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| KubeError::ImageConfig {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        let config = ImageConfig::parse(&text, path)?;
        tracing::info!(path = %path.display(), lectures = config.lectures.len(), "loaded image config");
        Ok(config)
    }

    /// Parses the text of an image config file; `path` names it in errors and decides the
    /// format (`.json`: JSON, else YAML).
    pub fn parse(text: &str, path: &Path) -> Result<ImageConfig, KubeError> {
        let err = |message: String| KubeError::ImageConfig {
            path: path.to_owned(),
            message,
        };
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let value: serde_yaml::Value = if is_json {
            serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?
        } else {
            serde_yaml::from_str(text).map_err(|e| err(format!("invalid YAML: {e}")))?
        };
        let mapping = match value {
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            serde_yaml::Value::Mapping(m) => m,
            other => {
                return Err(err(format!(
                    "expected a map from lecture code to image, found {}",
                    kind(&other)
                )));
            }
        };
        let mut lectures = BTreeMap::new();
        for (key, value) in mapping {
            let lecture = key_text(&key).ok_or_else(|| {
                err(format!(
                    "a lecture code must be a string, found {}",
                    kind(&key)
                ))
            })?;
            let entry = match value {
                serde_yaml::Value::String(image) => LectureImage::Image(image),
                serde_yaml::Value::Mapping(per_assignment) => {
                    let mut images = BTreeMap::new();
                    for (key, value) in per_assignment {
                        let assignment = key_text(&key).ok_or_else(|| {
                            err(format!(
                                "lecture {lecture:?}: an assignment name must be a string, found {}",
                                kind(&key)
                            ))
                        })?;
                        let serde_yaml::Value::String(image) = value else {
                            return Err(err(format!(
                                "lecture {lecture:?}, assignment {assignment:?}: expected an image name, found {}",
                                kind(&value)
                            )));
                        };
                        images.insert(assignment, image);
                    }
                    LectureImage::PerAssignment(images)
                }
                other => {
                    return Err(err(format!(
                        "lecture {lecture:?}: expected an image name or a map from assignment name to image, found {}",
                        kind(&other)
                    )));
                }
            };
            lectures.insert(lecture, entry);
        }
        Ok(ImageConfig {
            path: Some(path.to_owned()),
            lectures,
        })
    }

    /// The file this config was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What the config says for `lecture_code`, if anything.
    pub fn lecture(&self, lecture_code: &str) -> Option<&LectureImage> {
        self.lectures.get(lecture_code)
    }

    /// The image for an assignment: the config's image for the lecture (or for the assignment
    /// name within it), else `default_template` rendered.
    pub fn resolve(
        &self,
        lecture_code: &str,
        assignment_id: u64,
        assignment_name: &str,
        default_template: &ImageNameTemplate,
    ) -> String {
        match self.lectures.get(lecture_code) {
            Some(LectureImage::Image(image)) => image.clone(),
            Some(LectureImage::PerAssignment(images)) if images.contains_key(assignment_name) => {
                images[assignment_name].clone()
            }
            _ => default_template.render(lecture_code, &assignment_id.to_string(), assignment_name),
        }
    }
}

fn key_text(key: &serde_yaml::Value) -> Option<String> {
    match key {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing (null)",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(template: &str) -> ImageNameTemplate {
        ImageNameTemplate::parse(template).unwrap()
    }

    fn parse(text: &str, name: &str) -> Result<ImageConfig, KubeError> {
        ImageConfig::parse(text, Path::new(name))
    }

    #[test]
    fn yaml_lecture_and_assignment_images() {
        let c = parse(
            "cs101: reg/cs101:1\nml:\n  A1: reg/ml-a1\n  A2: reg/ml-a2\n2024: reg/year\n",
            "images.yaml",
        )
        .unwrap();
        let t = &tpl("{lecture}_image");
        assert_eq!(c.resolve("cs101", 1, "anything", t), "reg/cs101:1");
        assert_eq!(c.resolve("ml", 7, "A2", t), "reg/ml-a2");
        assert_eq!(c.resolve("ml", 7, "A3", t), "ml_image");
        assert_eq!(c.resolve("2024", 1, "x", t), "reg/year");
        assert_eq!(c.resolve("other", 1, "x", t), "other_image");
    }

    #[test]
    fn json_files_parse_as_json() {
        let c = parse(r#"{"cs101": {"A1": "reg/a1"}}"#, "images.JSON").unwrap();
        assert_eq!(c.resolve("cs101", 3, "A1", &tpl("x")), "reg/a1");
        let e = parse("cs101: x", "images.json").unwrap_err().to_string();
        assert!(
            e.contains("images.json") && e.contains("invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn wrong_shapes_name_the_key() {
        let e = parse("cs101: 3\n", "i.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("image config i.yaml: lecture \"cs101\""),
            "{e}"
        );
        assert!(e.contains("found a number"), "{e}");
        let e = parse("ml:\n  A1: [x]\n", "i.yaml").unwrap_err().to_string();
        assert!(
            e.contains("lecture \"ml\", assignment \"A1\"") && e.contains("a list"),
            "{e}"
        );
        let e = parse("- a\n- b\n", "i.yaml").unwrap_err().to_string();
        assert!(e.contains("expected a map"), "{e}");
        let e = parse("cs101: [\n", "i.yaml").unwrap_err().to_string();
        assert!(e.contains("i.yaml") && e.contains("invalid YAML"), "{e}");
    }

    #[test]
    fn empty_file_and_no_file_use_the_template() {
        assert_eq!(
            parse("", "i.yaml")
                .unwrap()
                .resolve("a", 1, "n", &tpl("{lecture}")),
            "a"
        );
        let c = ImageConfig::load(None).unwrap();
        assert_eq!(
            c.resolve(
                "cs",
                4,
                "A 1",
                &tpl("img-{assignment_id}-{assignment_name}")
            ),
            "img-4-A 1"
        );
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = ImageConfig::load(Some(Path::new("/nonexistent/images.yaml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/images.yaml") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.yml");
        std::fs::write(&path, "cs101: reg/cs\n").unwrap();
        let c = ImageConfig::load(Some(&path)).unwrap();
        assert_eq!(c.path(), Some(path.as_path()));
        assert_eq!(
            c.lecture("cs101"),
            Some(&LectureImage::Image("reg/cs".into()))
        );
    }
}

//! Image-name templates: the image a grading pod runs, made from the lecture and assignment.
//!
//! `kube.default_image_name` (default [`DEFAULT_IMAGE_NAME`]) names the image of every lecture
//! the image config does not list. A template is parsed and checked once, when the
//! configuration is loaded, so an unknown placeholder or a stray brace is refused there with
//! the key named; rendering a checked template cannot fail.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default image-name template: one image per lecture.
pub const DEFAULT_IMAGE_NAME: &str = "{lecture}_image";

/// The placeholders [`ImageNameTemplate`] accepts.
pub const IMAGE_NAME_PLACEHOLDERS: &[&str] = &["lecture", "assignment_id", "assignment_name"];

/// A checked image-name template over `{lecture}`, `{assignment_id}` and
/// `{assignment_name}`; `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageNameTemplate {
    source: String,
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Text(String),
    Lecture,
    AssignmentId,
    AssignmentName,
}

/// Why an image-name template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is empty.
    #[error("empty image name template")]
    Empty,
    /// A `{name}` placeholder other than the allowed ones.
    #[error(
        "unknown placeholder `{{{placeholder}}}` in template {template:?} (allowed: {{lecture}}, {{assignment_id}}, {{assignment_name}}; write {{{{ and }}}} for literal braces)"
    )]
    UnknownPlaceholder {
        /// The whole template.
        template: String,
        /// The name between the braces.
        placeholder: String,
    },
    /// A `{` without its `}` or a `}` without its `{`.
    #[error(
        "unbalanced brace at byte {position} in template {template:?} (write {{{{ and }}}} for literal braces)"
    )]
    UnbalancedBrace {
        /// The whole template.
        template: String,
        /// Byte offset of the offending brace.
        position: usize,
    },
}

impl ImageNameTemplate {
    /// Parses and checks a template.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = template.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &template[i + 1..];
                    let Some(end) = rest
                        .find(['}', '{'])
                        .filter(|&e| rest[e..].starts_with('}'))
                    else {
                        return Err(TemplateError::UnbalancedBrace {
                            template: template.to_owned(),
                            position: i,
                        });
                    };
                    let name = &rest[..end];
                    let part = match name {
                        "lecture" => TemplatePart::Lecture,
                        "assignment_id" => TemplatePart::AssignmentId,
                        "assignment_name" => TemplatePart::AssignmentName,
                        _ => {
                            return Err(TemplateError::UnknownPlaceholder {
                                template: template.to_owned(),
                                placeholder: name.to_owned(),
                            });
                        }
                    };
                    if !text.is_empty() {
                        parts.push(TemplatePart::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                    // Skip the name and the closing brace.
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError::UnbalancedBrace {
                        template: template.to_owned(),
                        position: i,
                    });
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(TemplatePart::Text(text));
        }
        Ok(ImageNameTemplate {
            source: template.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Fills the placeholders in.
    pub fn render(&self, lecture: &str, assignment_id: &str, assignment_name: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Lecture => out.push_str(lecture),
                TemplatePart::AssignmentId => out.push_str(assignment_id),
                TemplatePart::AssignmentName => out.push_str(assignment_name),
            }
        }
        out
    }
}

impl Default for ImageNameTemplate {
    /// [`DEFAULT_IMAGE_NAME`].
    fn default() -> Self {
        ImageNameTemplate::parse(DEFAULT_IMAGE_NAME).expect("the default template is valid")
    }
}

impl FromStr for ImageNameTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageNameTemplate::parse(s)
    }
}

impl TryFrom<String> for ImageNameTemplate {
    type Error = TemplateError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        ImageNameTemplate::parse(&s)
    }
}

impl From<ImageNameTemplate> for String {
    fn from(t: ImageNameTemplate) -> String {
        t.source
    }
}

impl fmt::Display for ImageNameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

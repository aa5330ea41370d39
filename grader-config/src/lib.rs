//! Typed, layered configuration of the grader.
//!
//! # Layers
//!
//! Later layers win over earlier ones:
//!
//! 1. the built-in defaults ([`GraderConfig::default`]);
//! 2. the system file [`SYSTEM_CONFIG_FILE`] (`/etc/grader/grader.toml`), when
//!    it exists;
//! 3. the local file [`LOCAL_CONFIG_FILE`] (`./grader.toml`), when it exists —
//!    or instead the files given with `--config` (one or more, later files
//!    win), each of which must exist;
//! 4. `GRADER_*` environment variables;
//! 5. command-line flags ([`Overrides`]).
//!
//! Typed tables (`[kube]`, `[kube.resources]`) merge key by key across
//! layers; free-form tables (`kube.volume`, `kube.labels`,
//! `kube.annotations`, `kube.node_selector`, `kube.resources.requests`,
//! `kube.resources.limits`, `kube.extra_pod_config`,
//! `kube.extra_container_config`) and all lists are replaced as a whole by the
//! highest layer that sets them.
//!
//! Unknown keys are errors, in every layer. Every error names the key and the
//! file, environment variable or flag that supplied it.
//!
//! # Environment variables
//!
//! `GRADER_` followed by the key in capitals, with `__` between a table and
//! its key: `max_grading_time` is `GRADER_MAX_GRADING_TIME`,
//! `kube.namespace` is `GRADER_KUBE__NAMESPACE`, `kube.resources.limits` is
//! `GRADER_KUBE__RESOURCES__LIMITS`. The name after the prefix is lowercased.
//! Values are read according to the key:
//!
//! * strings, paths, names and templates are taken verbatim
//!   (`GRADER_KUBE__NAMESPACE=123` is the string `"123"`);
//! * integers and booleans are parsed (`600`, `true`); anything that does not
//!   parse stays a string and is then refused with a type error naming the
//!   variable; `GRADER_KUBE__UID=none` unsets the uid;
//! * tables and lists are given whole, as JSON or as a TOML inline value:
//!   `GRADER_KUBE__LABELS='{"app.kubernetes.io/part-of": "grader"}'`,
//!   `GRADER_KUBE__VOLUME='{name = "data", hostPath = {path = "/srv"}}'`,
//!   `GRADER_KUBE__IMAGE_PULL_SECRETS='["regcred"]'`. Text that is neither is
//!   an error; a variable that reaches *into* a table
//!   (`GRADER_KUBE__LABELS__APP`) is an error too, because variable names
//!   cannot carry the case and punctuation of Kubernetes keys.
//!
//! A `GRADER_*` variable that names no key is an error naming it, except the
//! variables the binary and the project's scripts use ([`RESERVED_ENV_VARS`]:
//! `GRADER_LOG`, `GRADER_CACHE`, `GRADER_VENV`, `GRADER_CONFIG`, ...) and those added with
//! [`ConfigLoader::ignore_env_var`].
//!
//! # Example
//!
//! ```
//! use grader_config::{Backend, ConfigLoader, Overrides};
//!
//! let loaded = ConfigLoader::new()
//!     .env_vars([("GRADER_MAX_GRADING_TIME", "600")])
//!     .overrides(Overrides::new().set("backend", Backend::Kube, "--backend"))
//!     .load()
//!     .unwrap();
//! assert_eq!(loaded.config.max_grading_time, 600);
//! assert_eq!(loaded.config.backend, Backend::Kube);
//! assert_eq!(loaded.layer_of("backend").to_string(), "flag --backend");
//! ```

#![warn(missing_docs)]

mod context;
mod error;
mod keys;
mod layers;
mod loaded;
mod loader;
mod model;
mod overrides;
mod render;
pub mod schema;
mod settings;
mod validate;

pub use error::{ConfigError, Layer};
pub use loaded::{Loaded, NOT_SET};
pub use loader::{ConfigLoader, LOCAL_CONFIG_FILE, RESERVED_ENV_VARS, SYSTEM_CONFIG_FILE};
pub use model::*;
pub use overrides::Overrides;
pub use schema::{ENV_PREFIX, KEYS, KeyInfo, KeyKind, reference_markdown};
pub use settings::{LocalSettings, SettingError, Settings, WarmSettings};

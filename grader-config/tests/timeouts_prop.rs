//! Any ordered cell-timeout triple loads; any other triple is refused.

use grader_config::{ConfigError, ConfigLoader, Overrides};
use proptest::prelude::*;

fn load(min: u64, default: u64, max: u64) -> Result<grader_config::Loaded, ConfigError> {
    ConfigLoader::new()
        .env_vars([
            ("GRADER_MIN_CELL_TIMEOUT", min.to_string()),
            ("GRADER_DEFAULT_CELL_TIMEOUT", default.to_string()),
        ])
        .overrides(Overrides::new().set("max_cell_timeout", max, "--max-cell-timeout"))
        .load()
}

proptest! {
    #[test]
    fn valid_triples_load(min in 1u64..1_000_000, d1 in 1u64..1_000_000, d2 in 1u64..1_000_000) {
        let default = min + d1;
        let max = default + d2;
        let loaded = load(min, default, max).unwrap();
        prop_assert_eq!(loaded.config.min_cell_timeout, min);
        prop_assert_eq!(loaded.config.default_cell_timeout, default);
        prop_assert_eq!(loaded.config.max_cell_timeout, max);
    }

    #[test]
    fn invalid_triples_are_refused(min in 0u64..50, default in 0u64..50, max in 0u64..50) {
        prop_assume!(!(0 < min && min < default && default < max));
        match load(min, default, max) {
            Err(ConfigError::CellTimeouts { min: m, default: d, max: x, .. }) => {
                prop_assert_eq!((m, d, x), (min, default, max));
            }
            other => prop_assert!(false, "expected CellTimeouts, got {:?}", other.map(|l| l.config)),
        }
    }

    #[test]
    fn any_triple_is_accepted_iff_ordered(min in any::<u64>(), default in any::<u64>(), max in any::<u64>()) {
        let ordered = 0 < min && min < default && default < max;
        prop_assert_eq!(load(min, default, max).is_ok(), ordered);
    }
}

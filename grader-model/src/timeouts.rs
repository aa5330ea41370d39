//! Cell timeouts: the per-cell limit the grading tool is given, from the assignment's own
//! `cell_timeout` clamped to the configured bounds.
//!
//! Checked once, where the configuration is loaded; the pipeline only clamps.

/// Cell timeout limits, validated `0 < min < default < max` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellTimeouts {
    min: u64,
    default: u64,
    max: u64,
}

/// Cell timeout limits that do not satisfy `0 < min < default < max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cell timeouts must satisfy 0 < min_cell_timeout < default_cell_timeout < max_cell_timeout, \
     got min_cell_timeout = {min}, default_cell_timeout = {default}, max_cell_timeout = {max}"
)]
pub struct InvalidTimeouts {
    pub min: u64,
    pub default: u64,
    pub max: u64,
}

impl CellTimeouts {
    /// Validated limits.
    pub fn new(min: u64, default: u64, max: u64) -> Result<Self, InvalidTimeouts> {
        if 0 < min && min < default && default < max {
            Ok(CellTimeouts { min, default, max })
        } else {
            Err(InvalidTimeouts { min, default, max })
        }
    }

    /// The assignment's own timeout clamped to `[min, max]`, else the default.
    pub fn effective(&self, assignment: Option<u64>) -> u64 {
        match assignment {
            Some(t) => t.clamp(self.min, self.max),
            None => self.default,
        }
    }
}

/// Default smallest cell timeout an assignment may ask for, in seconds.
pub const DEFAULT_MIN_CELL_TIMEOUT: u64 = 10;
/// Default cell timeout of an assignment that sets none, in seconds.
pub const DEFAULT_CELL_TIMEOUT: u64 = 300;
/// Default largest cell timeout an assignment may ask for, in seconds (one day).
pub const DEFAULT_MAX_CELL_TIMEOUT: u64 = 86_400;

impl Default for CellTimeouts {
    /// [`DEFAULT_MIN_CELL_TIMEOUT`] < [`DEFAULT_CELL_TIMEOUT`] < [`DEFAULT_MAX_CELL_TIMEOUT`].
    fn default() -> Self {
        CellTimeouts {
            min: DEFAULT_MIN_CELL_TIMEOUT,
            default: DEFAULT_CELL_TIMEOUT,
            max: DEFAULT_MAX_CELL_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_timeouts_are_validated_and_clamped() {
        assert!(CellTimeouts::new(0, 1, 2).is_err());
        assert!(CellTimeouts::new(10, 10, 20).is_err());
        assert!(CellTimeouts::new(10, 30, 20).is_err());
        let t = CellTimeouts::new(10, 300, 1000).unwrap();
        assert_eq!(t.effective(None), 300);
        assert_eq!(t.effective(Some(5)), 10);
        assert_eq!(t.effective(Some(50)), 50);
        assert_eq!(t.effective(Some(5000)), 1000);
        assert!(
            CellTimeouts::new(10, 5, 20)
                .unwrap_err()
                .to_string()
                .contains("default_cell_timeout = 5")
        );
    }
}

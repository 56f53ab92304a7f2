//! Checks of settings that clap cannot express, with messages that name the
//! setting as a user sets it (`NAME (--flag)`).

use std::time::Duration;

/// Every duration must be greater than zero: the first that is not is named.
pub fn require_positive(durations: &[(&str, Duration)]) -> Result<(), String> {
    match durations.iter().find(|(_, value)| value.is_zero()) {
        Some((name, _)) => Err(format!("{name} must be greater than zero")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_zero_duration_is_named() {
        let ok = Duration::from_secs(1);
        assert!(require_positive(&[("A (--a)", ok)]).is_ok());
        let err = require_positive(&[("A (--a)", ok), ("B (--b)", Duration::ZERO)])
            .expect_err("zero refused");
        assert_eq!(err, "B (--b) must be greater than zero");
    }
}

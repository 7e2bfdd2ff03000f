//! The ranges vbench takes for numbers a user gives, in a manifest or on `bench`'s command
//! line: wide enough for any real experiment, narrow enough that no schedule, timer or buffer
//! built from them overflows or exhausts memory (a typo such as `input_len = 100000000` is an
//! error, not a machine out of memory).

use std::ops::RangeInclusive;

/// Offered requests (or session starts) per second; `inf` is separate.
pub const RATES: RangeInclusive<f64> = 1e-3..=1e6;
/// The gamma arrival process's shape.
pub const BURSTINESS: RangeInclusive<f64> = 1e-3..=1e3;
/// Trace replay speed-ups.
pub const SPEEDUPS: RangeInclusive<f64> = 1e-3..=1e6;
/// Any timeout, wait or think time, in seconds: a week.
pub const MAX_WAIT_S: f64 = 7.0 * 86_400.0;
/// Tokens of one synthesised prompt part (prompt, system prompt, question) or of one output.
pub const MAX_TOKENS: u64 = 1 << 20;
/// Turns of one multi-turn session.
pub const MAX_TURNS: u64 = 10_000;
/// Shared-prefix groups.
pub const MAX_GROUPS: u64 = 1 << 20;

/// Whether `seconds` is a usable timeout or wait: positive (or 0 where `zero_ok`), finite, at
/// most [`MAX_WAIT_S`].
pub fn is_wait(seconds: f64, zero_ok: bool) -> bool {
    seconds.is_finite() && (seconds > 0.0 || (zero_ok && seconds == 0.0)) && seconds <= MAX_WAIT_S
}

/// `x` as a person writes it: `0`, `-1`, `2.5`, and `1e300` or `5e-324` at the extremes (Rust's
/// plain `{}` spells those out digit by digit).
pub fn show(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e16).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_show_as_written() {
        let shown: Vec<String> = [0.0, -1.0, 2.5, 1e300, 5e-324, 604800.0]
            .into_iter()
            .map(super::show)
            .collect();
        assert_eq!(shown, ["0", "-1", "2.5", "1e300", "5e-324", "604800"]);
    }
}

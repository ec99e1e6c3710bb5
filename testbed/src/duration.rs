//! Parsing of human-written durations such as `5ms`, `1.5s` or `250us`, as used by the
//! `testbed` command line.

use std::time::Duration;

/// Why a duration could not be parsed; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}")]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it, as a short phrase.
    pub reason: &'static str,
}

/// Parses a non-negative decimal number followed by a unit: `ns`, `us` (or `µs`), `ms`, `s`,
/// `m` or `h`, e.g. `5ms`, `1s`, `250us`, `0.5ms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(testbed::parse_duration("5ms"), Ok(Duration::from_millis(5)));
/// assert_eq!(testbed::parse_duration("250us"), Ok(Duration::from_micros(250)));
/// assert!(testbed::parse_duration("5").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| fail("missing unit (use ns, us, ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(fail("expected a number before the unit"));
    }
    let value: f64 = number.parse().map_err(|_| fail("not a number"))?;
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(fail("unknown unit (use ns, us, ms, s, m or h)")),
    };
    // Whole numbers of small units go through integers so that `250us` is exact.
    if let Ok(whole) = number.parse::<u64>() {
        let exact = match unit {
            "ns" => Some(Duration::from_nanos(whole)),
            "us" | "µs" => Some(Duration::from_micros(whole)),
            "ms" => Some(Duration::from_millis(whole)),
            "s" => Some(Duration::from_secs(whole)),
            _ => None,
        };
        if let Some(duration) = exact {
            return Ok(duration);
        }
    }
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| fail("out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 1.5ms "), Ok(Duration::from_micros(1500)));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let cases = [
            (
                "5",
                "invalid duration `5`: missing unit (use ns, us, ms, s, m or h)",
            ),
            (
                "ms",
                "invalid duration `ms`: expected a number before the unit",
            ),
            (
                "5 ms",
                "invalid duration `5 ms`: unknown unit (use ns, us, ms, s, m or h)",
            ),
            (
                "5d",
                "invalid duration `5d`: unknown unit (use ns, us, ms, s, m or h)",
            ),
            ("1.2.3s", "invalid duration `1.2.3s`: not a number"),
            (
                "-5ms",
                "invalid duration `-5ms`: expected a number before the unit",
            ),
            (
                "",
                "invalid duration ``: missing unit (use ns, us, ms, s, m or h)",
            ),
        ];
        for (input, message) in cases {
            let error = parse_duration(input).expect_err(input);
            assert_eq!(error.to_string(), message, "input {input:?}");
        }
    }

    #[test]
    fn rejects_overflow() {
        let error = parse_duration("1e400h").expect_err("overflow");
        assert_eq!(error.reason, "unknown unit (use ns, us, ms, s, m or h)");
        let huge = format!("{}h", "9".repeat(30));
        assert_eq!(
            parse_duration(&huge).map_err(|e| e.reason),
            Err("out of range")
        );
    }
}

//! The one duration grammar of pushbench: scenario files, every command-line flag, the
//! testbed and the relay's configuration read durations the same way and refuse them with the
//! same sentence.
//!
//! A duration is one or more `NUMBER UNIT` pairs, units `ns`, `us` (or `µs`), `ms`, `s`, `m`,
//! `h`: `500us`, `250ms`, `1.5s`, `1m30s`, `2h`. Whole numbers of a unit are exact, and so are
//! decimals down to the nanosecond (`0.5ms` is 500 µs, not 499.999 µs). A bare number is
//! refused: `20` could mean seconds or milliseconds, and a load test that runs 1000× too long
//! is worse than an error. Only `0` may stand alone.
//!
//! ```
//! use std::time::Duration;
//! use common::duration::{format, parse};
//! assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(parse("500us").unwrap(), Duration::from_micros(500));
//! assert_eq!(format(Duration::from_millis(1500)), "1500ms");
//! assert_eq!(
//!     parse("20").unwrap_err().to_string(),
//!     "expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `20`"
//! );
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration accepted: about 31.7 years, far beyond any run or timeout, and small
/// enough that adding two never overflows an `Instant`.
pub const MAX: Duration = Duration::from_secs(1_000_000_000);

/// A duration that is not in the grammar. Its text is the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `{}`",
            self.input
        )
    }
}

impl std::error::Error for DurationError {}

/// Nanoseconds in one unit.
fn unit_ns(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration (see the module docs).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError {
        input: text.to_string(),
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let per = unit_ns(unit).ok_or_else(bad)?;
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut ns = whole.checked_mul(per).ok_or_else(bad)?;
        // The fraction, exact to the nanosecond: digits beyond it are truncated.
        let mut scale = per;
        for d in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            ns += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(ns).ok_or_else(bad)?;
        rest = next;
    }
    if total > MAX.as_nanos() {
        return Err(bad());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration the way operators write them: `1m30s`, `250ms`, `7us`, `0s`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns % 1_000_000_000 == 0 {
        let s = ns / 1_000_000_000;
        let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
        let mut out = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if n > 0 {
                out += &std::format!("{n}{unit}");
            }
        }
        return out;
    }
    for (per, unit) in [(1_000_000, "ms"), (1_000, "us")] {
        if ns % per == 0 {
            return std::format!("{}{unit}", ns / per);
        }
    }
    std::format!("{ns}ns")
}

/// A duration read from a file or a flag, in the [module](self)'s grammar; serialises back
/// to the same text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Dur {
        Dur(d)
    }
}

impl FromStr for Dur {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Dur, DurationError> {
        parse(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `500us`, `250ms` or `1m30s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// `#[serde(deserialize_with = "common::duration::deserialize")]` for a plain `Duration`
/// field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Dur::deserialize(d).map(Dur::get)
}

/// `#[serde(serialize_with = "common::duration::serialize")]` for a plain `Duration` field.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    Dur(*d).serialize(s)
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(0|([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|ms|s|m|h))+$",
            "description": "A duration with a unit: `500us`, `250ms`, `20s`, `1m30s`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_combination() {
        let cases = [
            ("7ns", Duration::from_nanos(7)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("500us", Duration::from_micros(500)),
            ("5ms", Duration::from_millis(5)),
            ("1s", Duration::from_secs(1)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("1.5s", Duration::from_millis(1500)),
            (" 1.5ms ", Duration::from_micros(1500)),
            ("0.5ms", Duration::from_micros(500)),
            (".25s", Duration::from_millis(250)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("0.0000000001s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn everything_else_gets_the_one_sentence() {
        for bad in [
            "",
            "20",
            "2.",
            "ms",
            "1x",
            "5d",
            "5 ms",
            "1.2.3s",
            "-5ms",
            "s20",
            "1e3s",
            "1s2",
            ".s",
            "99999999999h",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert_eq!(
                e,
                std::format!("expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `{bad}`"),
            );
        }
        assert!(parse("31709y").is_err());
        assert!(parse("1000000001s").is_err());
        assert_eq!(parse("1000000000s"), Ok(MAX));
    }

    #[test]
    fn formats_back_to_the_grammar() {
        for (d, text) in [
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(7), "7us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
    }

    #[test]
    fn serde_reads_strings_and_zero_only() {
        let d: Dur = serde_json::from_str("\"250ms\"").unwrap();
        assert_eq!(d.get(), Duration::from_millis(250));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"250ms\"");
        let z: Dur = serde_json::from_str("0").unwrap();
        assert_eq!(z.get(), Duration::ZERO);
        let e = serde_json::from_str::<Dur>("20").unwrap_err().to_string();
        assert!(e.contains("got `20`"), "{e}");
    }
}

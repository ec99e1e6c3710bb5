//! The values of a link profile that carry a unit: probabilities (`2%`), bit rates
//! (`20mbit`), sizes (`64kb`) and mean lengths in packets, each read from text and printed
//! back in the same form.

use std::fmt;
use std::str::FromStr;

/// A probability, written as a percentage (`2%`, `0.5%`) or a fraction (`0.02`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fraction(pub(super) f64);

impl Fraction {
    /// The probability, 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }

    /// `p` (0 to 1), or `None` outside that range.
    pub fn new(p: f64) -> Option<Fraction> {
        (0.0..=1.0).contains(&p).then_some(Fraction(p))
    }
}

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Fraction, String> {
        let bad =
            || format!("expected a probability such as `2%` or `0.02` (0 to 100%), got `{s}`");
        let (number, scale) = match s.strip_suffix('%') {
            Some(n) => (n, 100.0),
            None => (s, 1.0),
        };
        let p: f64 = number.trim().parse().map_err(|_| bad())?;
        Fraction::new(p / scale).ok_or_else(bad)
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:.4}", self.0 * 100.0);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{text}%")
    }
}

/// A mean length in packets, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Packets(pub(super) f64);

impl Packets {
    /// The mean length.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Packets {
    type Err = String;
    fn from_str(s: &str) -> Result<Packets, String> {
        match s.parse::<f64>() {
            Ok(n) if n >= 1.0 && n.is_finite() => Ok(Packets(n)),
            _ => Err(format!(
                "expected a mean length in packets, 1 or more, such as `8`, got `{s}`"
            )),
        }
    }
}

impl fmt::Display for Packets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A bit rate: `20mbit`, `512kbit`, `1gbit`, `9600bit` (1 kbit is 1,000 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    /// Bits per second, more than 0.
    pub bits_per_second: u64,
}

impl Rate {
    /// Bytes per second.
    pub fn bytes_per_second(self) -> f64 {
        self.bits_per_second as f64 / 8.0
    }
}

/// `NUMBER UNIT` with the unit's factor from `units` (matched ignoring case, longest first);
/// `None` when the text is not that or the result is not a whole number above 0.
fn number_with_unit(s: &str, units: &[(&str, f64)]) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let (unit, factor) = units.iter().find(|(u, _)| lower.ends_with(u))?;
    let number: f64 = lower[..lower.len() - unit.len()].trim().parse().ok()?;
    let value = number * factor;
    (value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value < 1e18)
        .then_some(value as u64)
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        const UNITS: [(&str, f64); 4] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)];
        number_with_unit(s, &UNITS)
            .map(|bits_per_second| Rate { bits_per_second })
            .ok_or_else(|| {
                format!("expected a bit rate such as `20mbit`, `512kbit` or `1gbit`, got `{s}`")
            })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_second;
        for (unit, per) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if b % per == 0 {
                return write!(f, "{}{unit}", b / per);
            }
        }
        write!(f, "{b}bit")
    }
}

/// A size in bytes: `1500b`, `64kb` (64,000), `64kib` (65,536), `1mb`, `1mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        const UNITS: [(&str, f64); 5] = [
            ("kib", 1024.0),
            ("mib", 1_048_576.0),
            ("kb", 1e3),
            ("mb", 1e6),
            ("b", 1.0),
        ];
        number_with_unit(s, &UNITS)
            .map(Size)
            .ok_or_else(|| format!("expected a size such as `1500b`, `64kb` or `1mib`, got `{s}`"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % 1_000_000 == 0 => write!(f, "{}mb", b / 1_000_000),
            b if b % 1_000 == 0 => write!(f, "{}kb", b / 1_000),
            b if b % 1_048_576 == 0 => write!(f, "{}mib", b / 1_048_576),
            b if b % 1_024 == 0 => write!(f, "{}kib", b / 1_024),
            b => write!(f, "{b}b"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_and_print_back() {
        for (text, bits) in [
            ("20mbit", 20_000_000),
            ("1.5mbit", 1_500_000),
            ("9600bit", 9600),
            ("1GBit", 1_000_000_000),
        ] {
            assert_eq!(
                text.parse::<Rate>().unwrap().bits_per_second,
                bits,
                "{text}"
            );
        }
        assert_eq!("1.5mbit".parse::<Rate>().unwrap().to_string(), "1500kbit");
        for (text, bytes) in [
            ("1500b", 1500),
            ("64kb", 64_000),
            ("64kib", 65_536),
            ("1mib", 1_048_576),
        ] {
            assert_eq!(text.parse::<Size>().unwrap().0, bytes, "{text}");
            assert_eq!(Size(bytes).to_string().parse::<Size>().unwrap().0, bytes);
        }
        assert!("0bit".parse::<Rate>().is_err() && "0.5b".parse::<Size>().is_err());
        assert_eq!("0.5%".parse::<Fraction>().unwrap().to_string(), "0.5%");
        assert_eq!("0.035".parse::<Fraction>().unwrap().to_string(), "3.5%");
    }
}

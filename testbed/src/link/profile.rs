//! A link profile: what one emulated path does to packets (delay, jitter, random and bursty
//! loss, a bandwidth cap with a bounded queue, cuts), read from a one-line string
//! (`rtt=180ms jitter=20ms loss=2% rate=20mbit`) or from TOML with the same keys. Both forms go
//! through one serde definition, so they accept and refuse the same things with the same
//! sentence; durations use `common::duration`'s grammar.
//!
//! Keys (all optional; a link with none is a plain wire):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `rtt` | round-trip delay; each direction adds half | `0` |
//! | `jitter` | each packet's one-way delay varies uniformly by ± this | `0` |
//! | `loss` | probability a packet is dropped at random, each direction (`2%` or `0.02`) | `0%` |
//! | `burst_rate` | Gilbert–Elliott: probability per packet that a loss burst starts | `0%` |
//! | `burst_length` | mean length of a burst, in packets | `1` |
//! | `burst_loss` | probability a packet inside a burst is dropped | `100%` |
//! | `rate` | bandwidth cap in both directions (`20mbit`, `512kbit`) | none |
//! | `up_rate`, `down_rate` | the cap from side A to B (up) or B to A (down), over `rate` | `rate` |
//! | `queue` | bytes waiting for the cap at most; more is dropped (`256kb`) | 100 ms of the rate |
//! | `bucket` | token bucket depth (`1500b`): bytes sent back to back after a pause | `1500b` |
//! | `reorder` | let jitter reorder packets (`true`); by default each direction keeps order | `false` |
//! | `cut_every`, `cut_for` | cut the link for `cut_for` at the end of every `cut_every` | none |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

pub use super::units::{Fraction, Packets, Rate, Size};

/// A profile that cannot be used; the text names the key (string form) or the file, line and
/// column (TOML).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProfileError(pub String);

/// What one emulated link does to packets; see the [module](self) docs for the keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Round-trip delay; each direction adds half.
    #[serde(deserialize_with = "common::duration::deserialize")]
    pub rtt: Duration,
    /// Each packet's one-way delay varies uniformly within ± this.
    #[serde(deserialize_with = "common::duration::deserialize")]
    pub jitter: Duration,
    /// Random loss per packet, each direction.
    #[serde(deserialize_with = "from_text")]
    pub loss: Fraction,
    /// Gilbert–Elliott: probability per packet, outside a burst, that a burst starts.
    #[serde(deserialize_with = "from_text")]
    pub burst_rate: Fraction,
    /// Gilbert–Elliott: mean burst length in packets (each packet in a burst ends it with
    /// probability 1 / `burst_length`).
    #[serde(deserialize_with = "from_text")]
    pub burst_length: Packets,
    /// Gilbert–Elliott: loss inside a burst.
    #[serde(deserialize_with = "from_text")]
    pub burst_loss: Fraction,
    /// Bandwidth cap in both directions.
    #[serde(deserialize_with = "some_from_text")]
    pub rate: Option<Rate>,
    /// Bandwidth cap from side A to side B, over `rate`.
    #[serde(deserialize_with = "some_from_text")]
    pub up_rate: Option<Rate>,
    /// Bandwidth cap from side B to side A, over `rate`.
    #[serde(deserialize_with = "some_from_text")]
    pub down_rate: Option<Rate>,
    /// Bytes waiting for the cap at most (default: 100 ms at the rate).
    #[serde(deserialize_with = "some_from_text")]
    pub queue: Option<Size>,
    /// Token bucket depth.
    #[serde(deserialize_with = "from_text")]
    pub bucket: Size,
    /// Whether jitter may reorder packets.
    #[serde(deserialize_with = "from_text")]
    pub reorder: bool,
    /// Period of scheduled cuts.
    #[serde(deserialize_with = "some_duration")]
    pub cut_every: Option<Duration>,
    /// Length of each scheduled cut, at the end of every period.
    #[serde(deserialize_with = "common::duration::deserialize")]
    pub cut_for: Duration,
}

impl Default for Profile {
    /// A plain wire: no delay, loss, cap or cut.
    fn default() -> Profile {
        Profile {
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: Fraction(0.0),
            burst_rate: Fraction(0.0),
            burst_length: Packets(1.0),
            burst_loss: Fraction(1.0),
            rate: None,
            up_rate: None,
            down_rate: None,
            queue: None,
            bucket: Size(1500),
            reorder: false,
            cut_every: None,
            cut_for: Duration::ZERO,
        }
    }
}

/// A direction of the link: up is from side A to side B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From side A to side B.
    Up,
    /// From side B to side A.
    Down,
}

impl Profile {
    /// Reads the one-line form: `KEY=VALUE` pairs separated by spaces or commas.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let pairs: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        // Each pair becomes one TOML line, so a serde error's line names the pair.
        let mut toml_text = String::new();
        for pair in &pairs {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(ProfileError(format!(
                    "link profile: `{pair}`: expected KEY=VALUE, e.g. `rtt=180ms`"
                )));
            };
            let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
            toml_text += &format!("{} = {}\n", quote(key), quote(value));
        }
        let profile: Profile = toml::from_str(&toml_text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| toml_text[..s.start].matches('\n').count());
            let pair = pairs.get(line).copied().unwrap_or(text);
            ProfileError(format!("link profile: `{pair}`: {}", message(&e)))
        })?;
        profile.check("link profile")?;
        Ok(profile)
    }

    /// Reads the TOML form; errors start with `name:LINE:COLUMN:`.
    pub fn from_toml(text: &str, name: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start.min(text.len()));
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
            ProfileError(format!("{name}:{line}:{column}: {}", message(&e)))
        })?;
        profile.check(name)?;
        Ok(profile)
    }

    /// Reads a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Profile, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError(format!("{name}: cannot read: {e}")))?;
        Profile::from_toml(&text, &name)
    }

    /// Checks the combinations serde cannot: cuts.
    fn check(&self, name: &str) -> Result<(), ProfileError> {
        let bad = |msg: &str| Err(ProfileError(format!("{name}: {msg}")));
        match self.cut_every {
            None if !self.cut_for.is_zero() => bad("cut_for: needs cut_every (how often)"),
            Some(every) if self.cut_for.is_zero() => bad(&format!(
                "cut_every = {}: needs cut_for (how long each cut lasts)",
                common::duration::format(every)
            )),
            Some(every) if self.cut_for >= every => bad(&format!(
                "cut_for: {} is not shorter than cut_every ({}): the link would never be up",
                common::duration::format(self.cut_for),
                common::duration::format(every)
            )),
            _ => Ok(()),
        }
    }

    /// The bandwidth cap in `direction`, if any.
    pub fn rate(&self, direction: Direction) -> Option<Rate> {
        match direction {
            Direction::Up => self.up_rate.or(self.rate),
            Direction::Down => self.down_rate.or(self.rate),
        }
    }

    /// The queue limit in bytes in `direction`: `queue`, or 100 ms at the rate (two buckets at
    /// least).
    pub fn queue_bytes(&self, direction: Direction) -> u64 {
        if let Some(q) = self.queue {
            return q.0;
        }
        let rate = self
            .rate(direction)
            .map_or(0, |r| r.bits_per_second / 8 / 10);
        rate.max(2 * self.bucket.0)
    }

    /// Whether a scheduled cut is on `since_start` after the link came up.
    pub fn scheduled_cut(&self, since_start: Duration) -> bool {
        let Some(every) = self.cut_every else {
            return false;
        };
        let into = since_start.as_nanos() % every.as_nanos();
        into >= (every - self.cut_for).as_nanos()
    }
}

/// Serde's message without the location and source line toml adds.
fn message(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

impl fmt::Display for Profile {
    /// The one-line form, with the keys that differ from the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Profile::default();
        let dur = |v: Duration| common::duration::format(v);
        let mut parts = Vec::new();
        let mut add = |key: &str, differs: bool, value: String| {
            if differs {
                parts.push(format!("{key}={value}"));
            }
        };
        add("rtt", self.rtt != d.rtt, dur(self.rtt));
        add("jitter", self.jitter != d.jitter, dur(self.jitter));
        add("loss", self.loss != d.loss, self.loss.to_string());
        add(
            "burst_rate",
            self.burst_rate != d.burst_rate,
            self.burst_rate.to_string(),
        );
        add(
            "burst_length",
            self.burst_length != d.burst_length,
            self.burst_length.to_string(),
        );
        add(
            "burst_loss",
            self.burst_loss != d.burst_loss,
            self.burst_loss.to_string(),
        );
        for (key, rate) in [
            ("rate", self.rate),
            ("up_rate", self.up_rate),
            ("down_rate", self.down_rate),
        ] {
            add(
                key,
                rate.is_some(),
                rate.map(|r| r.to_string()).unwrap_or_default(),
            );
        }
        add(
            "queue",
            self.queue.is_some(),
            self.queue.map(|q| q.to_string()).unwrap_or_default(),
        );
        add("bucket", self.bucket != d.bucket, self.bucket.to_string());
        add("reorder", self.reorder, "true".into());
        if let Some(every) = self.cut_every {
            add("cut_every", true, dur(every));
            add("cut_for", true, dur(self.cut_for));
        }
        if parts.is_empty() {
            return f.write_str("(plain wire)");
        }
        f.write_str(&parts.join(" "))
    }
}

/// Reads a value from a TOML string, number or boolean through its text form, so the one-line
/// form (all strings) and TOML accept the same values.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct Text;
    impl de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    let text = d.deserialize_any(Text)?;
    text.trim().parse().map_err(de::Error::custom)
}

fn some_from_text<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    from_text(d).map(Some)
}

fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    common::duration::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_form_reads_every_key() {
        let p = Profile::parse(
            "rtt=180ms, jitter=20ms loss=2% burst_rate=0.5% burst_length=8 burst_loss=50% \
             rate=20mbit up_rate=5mbit queue=64kib bucket=3000b reorder=true cut_every=1m cut_for=5s",
        )
        .unwrap();
        assert_eq!(p.rtt, Duration::from_millis(180));
        assert_eq!(p.jitter, Duration::from_millis(20));
        assert!((p.loss.get() - 0.02).abs() < 1e-12);
        assert!((p.burst_rate.get() - 0.005).abs() < 1e-12);
        assert_eq!(p.burst_length.get(), 8.0);
        assert_eq!(p.burst_loss.get(), 0.5);
        assert_eq!(p.rate(Direction::Up).unwrap().bits_per_second, 5_000_000);
        assert_eq!(p.rate(Direction::Down).unwrap().bits_per_second, 20_000_000);
        assert_eq!(p.queue_bytes(Direction::Up), 65_536);
        assert_eq!(p.bucket, Size(3000));
        assert!(p.reorder);
        assert_eq!(p.cut_every, Some(Duration::from_secs(60)));
        assert_eq!(p.cut_for, Duration::from_secs(5));
        // Display gives the one-line form back.
        assert_eq!(Profile::parse(&p.to_string()).unwrap(), p);
        assert_eq!(Profile::parse("").unwrap(), Profile::default());
        assert_eq!(Profile::default().to_string(), "(plain wire)");
    }

    #[test]
    fn toml_form_takes_the_same_keys_and_numbers() {
        let text =
            "rtt = \"180ms\"\nloss = 0.02\nburst_length = 4\nrate = \"8mbit\"\nreorder = false\n";
        let p = Profile::from_toml(text, "link.toml").unwrap();
        assert_eq!(p.to_string(), "rtt=180ms loss=2% burst_length=4 rate=8mbit");
        // The default queue holds 100 ms at the rate.
        assert_eq!(p.queue_bytes(Direction::Down), 100_000);
    }

    #[test]
    fn bad_values_name_the_pair_or_the_line() {
        let cases = [
            ("rtt=180", "link profile: `rtt=180`: expected a duration such as `500us`, `250ms` or `1m30s` (a number and a unit: ns, us, ms, s, m, h), got `180`"),
            ("rtt=1s loss=200%", "link profile: `loss=200%`: expected a probability such as `2%` or `0.02` (0 to 100%), got `200%`"),
            ("rate=20mbps", "link profile: `rate=20mbps`: expected a bit rate such as `20mbit`, `512kbit` or `1gbit`, got `20mbps`"),
            ("queue=10", "link profile: `queue=10`: expected a size such as `1500b`, `64kb` or `1mib`, got `10`"),
            ("burst_length=0.5", "link profile: `burst_length=0.5`: expected a mean length in packets, 1 or more, such as `8`, got `0.5`"),
            ("rtt 180ms", "link profile: `rtt`: expected KEY=VALUE, e.g. `rtt=180ms`"),
            ("cut_for=5s", "link profile: cut_for: needs cut_every (how often)"),
            ("cut_every=5s", "link profile: cut_every = 5s: needs cut_for (how long each cut lasts)"),
            ("cut_every=5s cut_for=5s", "link profile: cut_for: 5s is not shorter than cut_every (5s): the link would never be up"),
        ];
        for (text, want) in cases {
            assert_eq!(
                Profile::parse(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
        let e = Profile::parse("loss=1% rtx=3ms").unwrap_err().to_string();
        assert!(
            e.starts_with("link profile: `rtx=3ms`: unknown field `rtx`, expected one of `rtt`"),
            "{e}"
        );
        let e = Profile::from_toml("rtt = \"1s\"\n\nloss = \"x\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "p.toml:3:8: expected a probability such as `2%` or `0.02` (0 to 100%), got `x`"
        );
        let e = Profile::load(std::path::Path::new("/nonexistent/link.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/nonexistent/link.toml: cannot read: No such file or directory (os error 2)"
        );
        let e = Profile::from_toml("jiter = \"1ms\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:1:1: unknown field `jiter`"), "{e}");
    }

    #[test]
    fn scheduled_cuts_come_at_the_end_of_each_period() {
        let p = Profile::parse("cut_every=10s cut_for=2s").unwrap();
        let at = |s: f64| p.scheduled_cut(Duration::from_secs_f64(s));
        assert!(!at(0.0) && !at(7.9) && at(8.0) && at(9.9) && !at(10.0) && at(19.0));
        assert!(!Profile::default().scheduled_cut(Duration::from_secs(5)));
    }
}

//! Histogram plumbing shared by every part of the crate: how a histogram is created, how a
//! sample is recorded without ever panicking, the compressed text form written into run
//! files (HdrHistogram V2 + deflate, base64 standard) and the [`Summary`] of one histogram.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits kept by every histogram.
pub const SIGFIG: u8 = 3;

/// Samples above this many microseconds (about 12.7 days) are recorded as this value: a
/// histogram sized for `u64::MAX` would cost half a megabyte for one absurd sample.
pub const MAX_RECORDABLE: u64 = 1 << 40;

/// Why a compressed histogram could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistError {
    /// The text is not base64.
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not an HdrHistogram V2 (deflate) histogram.
    #[error("not an HdrHistogram V2 histogram: {0}")]
    Format(#[from] hdrhistogram::serialization::DeserializeError),
    /// Two histograms could not be added.
    #[error("histograms could not be added: {0}")]
    Add(#[from] hdrhistogram::AdditionError),
}

/// An empty auto-resizing histogram (lowest value 1, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    let mut h =
        Histogram::new_with_bounds(1, 2, SIGFIG).expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

/// Records `value` into `h`, saturating at [`MAX_RECORDABLE`]; never panics.
pub(crate) fn record(h: &mut Histogram<u64>, value: u64) {
    // An auto-resizing histogram accepts anything up to MAX_RECORDABLE; the error arm is
    // unreachable but must not take the process down with it.
    let _ = h.record(value.min(MAX_RECORDABLE));
}

/// Adds `src` into `dst`, growing `dst` when needed.
pub(crate) fn add(dst: &mut Histogram<u64>, src: &Histogram<u64>) -> Result<(), HistError> {
    dst.auto(true);
    dst.add(src)?;
    Ok(())
}

/// The compressed text form of `h`: HdrHistogram V2 deflate, base64 standard.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serialising u64 counts into a Vec cannot fail; should it ever, the empty string fails
    // to decode later with an error naming the metric rather than losing the run here.
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// Reads a histogram written by [`encode`] (or any HdrHistogram V2 / V2 deflate encoder).
pub fn decode(text: &str) -> Result<Histogram<u64>, HistError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    let mut h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    h.auto(true);
    Ok(h)
}

/// The headline numbers of one histogram; percentiles are `value_at_quantile` (µs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample (0 when empty).
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Largest sample.
    pub max: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Summary {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            max: h.max(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_keeps_every_count() {
        let mut h = new_histogram();
        for v in [0, 1, 5, 999, 1_000, 123_456, u64::MAX] {
            record(&mut h, v);
        }
        let back = decode(&encode(&h)).unwrap();
        let counts = |h: &Histogram<u64>| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&back), counts(&h));
        assert_eq!(back.len(), 7);
        assert!(
            back.max() >= MAX_RECORDABLE && back.max() <= MAX_RECORDABLE + MAX_RECORDABLE / 1000
        );
    }

    #[test]
    fn decode_rejects_garbage_with_a_reason() {
        let e = decode("%%%").unwrap_err();
        assert!(e.to_string().starts_with("not base64"), "{e}");
        let e = decode("AAAA").unwrap_err();
        assert!(e.to_string().starts_with("not an HdrHistogram"), "{e}");
    }

    #[test]
    fn summary_of_empty_is_zero() {
        assert_eq!(Summary::of(&new_histogram()), Summary::default());
    }
}

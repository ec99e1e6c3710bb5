//! Thresholds in k6's spirit: `p(99) < 250ms`, `rate < 0.1%`, `count == 0`, per metric and
//! tag filter, and their evaluation against a [`Run`].
//!
//! A threshold naming a metric (or tag filter) that matches nothing fails: a typo must not
//! pass a gate silently (k6 bug #1526).

use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;

use crate::key::{KeyError, MetricKey};
pub use crate::run::Verdict;
use crate::run::{CounterMetric, Run, Selected};

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    /// A percentile, `0 < q <= 100`: `p(99.9)`.
    P(f64),
    /// The mean.
    Avg,
    /// The median.
    Med,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// Samples of a histogram, value of a counter.
    Count,
    /// `value / total` of a hit/miss counter, else per second of run duration.
    Rate,
    /// A gauge's level at the end of the run.
    Value,
    /// A gauge's highest level.
    Peak,
}

impl Agg {
    /// Whether the aggregate is a latency (its values are durations).
    pub fn is_latency(self) -> bool {
        matches!(self, Agg::P(_) | Agg::Avg | Agg::Med | Agg::Min | Agg::Max)
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agg::P(q) => write!(f, "p({q})"),
            Agg::Avg => f.write_str("avg"),
            Agg::Med => f.write_str("med"),
            Agg::Min => f.write_str("min"),
            Agg::Max => f.write_str("max"),
            Agg::Count => f.write_str("count"),
            Agg::Rate => f.write_str("rate"),
            Agg::Value => f.write_str("value"),
            Agg::Peak => f.write_str("peak"),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    /// Whether `observed op limit` holds.
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
            Op::Ne => observed != limit,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = Op::ALL
            .iter()
            .find(|(_, op)| op == self)
            .map_or("?", |(text, _)| text);
        f.write_str(text)
    }
}

/// A parsed threshold expression such as `p(99) < 250ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expr {
    /// What is measured.
    pub agg: Agg,
    /// How it is compared.
    pub op: Op,
    /// The limit: µs for latency aggregates, a fraction for rates given as a percentage,
    /// else a plain number.
    pub value: f64,
}

/// Why a threshold expression could not be parsed; each message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Not of the form `<aggregate> <op> <value>`.
    #[error("expected `<aggregate> <op> <value>` such as `p(99) < 250ms`, got `{0}`")]
    Shape(String),
    /// An aggregate this crate does not know.
    #[error("expected an aggregate `p(N)`, `avg`, `med`, `min`, `max`, `count`, `rate`, `value` or `peak` such as `p(99) < 250ms`, got `{0}`")]
    Aggregate(String),
    /// A percentile outside `0 < q <= 100`.
    #[error("expected a percentile above 0 and at most 100 such as `p(99.9)`, got `{0}`")]
    Percentile(String),
    /// A value that is not a number with a known unit.
    #[error("expected a number with an optional unit (`us`, `µs`, `ms`, `s`, `m` or `%`) such as `250ms`, got `{0}`")]
    Value(String),
    /// A unit that makes no sense for the aggregate.
    #[error("expected {expected} for `{agg}` such as `{example}`, got `{got}`")]
    Unit {
        /// The aggregate as written.
        agg: String,
        /// What kind of value it takes.
        expected: &'static str,
        /// An example.
        example: &'static str,
        /// The value as written.
        got: String,
    },
}

/// Parses `number` (already unit-free) scaled by `10^exp`, exactly as decimal text would be.
fn parse_scaled(number: &str, exp: i32) -> Option<f64> {
    if number.is_empty()
        || !number
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
    {
        return None;
    }
    format!("{number}e{exp}")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn parse_agg(text: &str) -> Result<Agg, ExprError> {
    let agg = match text {
        "avg" => Agg::Avg,
        "med" => Agg::Med,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "count" => Agg::Count,
        "rate" => Agg::Rate,
        "value" => Agg::Value,
        "peak" => Agg::Peak,
        _ => {
            let inner = text
                .strip_prefix("p(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(|| ExprError::Aggregate(text.to_string()))?;
            match parse_scaled(inner.trim(), 0) {
                Some(q) if q > 0.0 && q <= 100.0 => Agg::P(q),
                _ => return Err(ExprError::Percentile(text.to_string())),
            }
        }
    };
    Ok(agg)
}

fn parse_value(agg: Agg, agg_text: &str, text: &str) -> Result<f64, ExprError> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(text.len());
    let (number, unit) = (text[..split].trim(), text[split..].trim());
    let bad_value = || ExprError::Value(text.to_string());
    let unit_error = |expected, example| ExprError::Unit {
        agg: agg_text.to_string(),
        expected,
        example,
        got: text.to_string(),
    };
    let value = match (agg, unit) {
        // A bare number is milliseconds, as in k6; with a unit, the shared duration grammar.
        (a, "") if a.is_latency() => parse_scaled(number, 3),
        (a, _) if a.is_latency() => match common::duration::parse(&format!("{number}{unit}")) {
            Ok(d) => Some(d.as_nanos() as f64 / 1e3),
            Err(_) if unit == "%" => return Err(unit_error("a duration", "p(99) < 250ms")),
            Err(_) => None,
        },
        (Agg::Rate, "%") => parse_scaled(number, -2),
        (Agg::Count | Agg::Rate | Agg::Value | Agg::Peak, "") => parse_scaled(number, 0),
        (_, "" | "ms" | "us" | "µs" | "s" | "m" | "%") => {
            return Err(if agg.is_latency() {
                unit_error("a duration", "p(99) < 250ms")
            } else if agg == Agg::Rate {
                unit_error(
                    "a fraction, a percentage or a number per second",
                    "rate < 0.1%",
                )
            } else {
                unit_error("a plain number", "count == 0")
            });
        }
        _ => None,
    };
    value.ok_or_else(bad_value)
}

impl FromStr for Expr {
    type Err = ExprError;

    fn from_str(s: &str) -> Result<Expr, ExprError> {
        let shape = || ExprError::Shape(s.to_string());
        let text = s.trim();
        let (at, op_text, op) = Op::ALL
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|at| (at, *t, *op)))
            .min_by_key(|(at, t, _)| (*at, std::cmp::Reverse(t.len())))
            .ok_or_else(shape)?;
        let agg_text = text[..at].trim();
        let value_text = text[at + op_text.len()..].trim();
        if agg_text.is_empty() || value_text.is_empty() {
            return Err(shape());
        }
        let agg = parse_agg(agg_text)?;
        let value = parse_value(agg, agg_text, value_text)?;
        Ok(Expr { agg, op, value })
    }
}

/// Writes `us` microseconds in the largest unit that keeps the exact value.
fn fmt_duration_limit(us: f64) -> String {
    for (unit, scale) in [("s", 1e6), ("ms", 1e3)] {
        let scaled = us / scale;
        if scaled.abs() >= 1.0
            && parse_scaled(&scaled.to_string(), if unit == "s" { 6 } else { 3 }) == Some(us)
        {
            return format!("{scaled}{unit}");
        }
    }
    format!("{us}us")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.agg.is_latency() {
            fmt_duration_limit(self.value)
        } else {
            self.value.to_string()
        };
        write!(f, "{} {} {}", self.agg, self.op, value)
    }
}

/// A gate: `expr` applied to the metric `metric` selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The metric, possibly with a tag filter.
    pub metric: MetricKey,
    /// The expression.
    pub expr: Expr,
    /// The expression as written.
    pub source: String,
}

/// Why a threshold could not be built from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The metric key is malformed.
    #[error("threshold metric: {0}")]
    Key(#[from] KeyError),
    /// The expression is malformed.
    #[error("threshold `{0}`: {1}")]
    Expr(String, ExprError),
}

impl Threshold {
    /// Parses a metric key and an expression.
    pub fn parse(metric: &str, expr: &str) -> Result<Threshold, ThresholdError> {
        Ok(Threshold {
            metric: metric.parse()?,
            expr: expr
                .parse()
                .map_err(|e| ThresholdError::Expr(expr.to_string(), e))?,
            source: expr.trim().to_string(),
        })
    }
}

fn on_histogram(agg: Agg, h: &Histogram<u64>, duration_s: f64) -> Result<f64, String> {
    if h.is_empty() && agg != Agg::Count {
        return Err("no samples".to_string());
    }
    Ok(match agg {
        Agg::P(q) => h.value_at_quantile(q / 100.0) as f64,
        Agg::Avg => h.mean(),
        Agg::Med => h.value_at_quantile(0.5) as f64,
        Agg::Min => h.min() as f64,
        Agg::Max => h.max() as f64,
        Agg::Count => h.len() as f64,
        Agg::Rate if duration_s > 0.0 => h.len() as f64 / duration_s,
        Agg::Rate => return Err("the run has no duration".to_string()),
        Agg::Value | Agg::Peak => {
            return Err(format!(
                "`{agg}` needs a gauge (use a percentile, `avg`, `count` or `rate`)"
            ))
        }
    })
}

fn on_counter(
    agg: Agg,
    c: CounterMetric,
    metric: &MetricKey,
    duration_s: f64,
) -> Result<f64, String> {
    Ok(match (agg, c.total) {
        (Agg::Count, _) => c.value as f64,
        (Agg::Rate, Some(0)) => 0.0,
        (Agg::Rate, Some(total)) => c.value as f64 / total as f64,
        (Agg::Rate, None) if duration_s > 0.0 => c.value as f64 / duration_s,
        (Agg::Rate, None) => return Err("the run has no duration".to_string()),
        (a, _) => {
            return Err(format!(
                "`{a}` needs a histogram but `{metric}` is a counter (use `count` or `rate`)"
            ))
        }
    })
}

/// Evaluates every threshold against `run`, in order. Store the result in
/// [`Run::thresholds`] to keep it with the run.
pub fn evaluate(run: &Run, thresholds: &[Threshold]) -> Vec<Verdict> {
    thresholds
        .iter()
        .map(|t| {
            let observed = match run.select(&t.metric) {
                Ok(None) => Err(format!("unknown metric `{}`", t.metric)),
                Err(e) => Err(e.to_string()),
                Ok(Some(Selected::Histogram(h))) => on_histogram(t.expr.agg, &h, run.load_s()),
                Ok(Some(Selected::Counter(c))) => {
                    on_counter(t.expr.agg, c, &t.metric, run.load_s())
                }
                Ok(Some(Selected::Gauge(g))) => match t.expr.agg {
                    Agg::Value => Ok(g.value as f64),
                    Agg::Peak => Ok(g.max as f64),
                    a => Err(format!(
                        "`{a}` does not apply to `{}`, a gauge (use `value` or `peak`)",
                        t.metric
                    )),
                },
            };
            let expr = if t.source.is_empty() {
                t.expr.to_string()
            } else {
                t.source.clone()
            };
            match observed {
                Ok(v) => Verdict {
                    metric: t.metric.to_string(),
                    expr,
                    ok: t.expr.op.holds(v, t.expr.value),
                    observed: Some(v),
                    message: None,
                },
                Err(message) => Verdict {
                    metric: t.metric.to_string(),
                    expr,
                    ok: false,
                    observed: None,
                    message: Some(message),
                },
            }
        })
        .collect()
}

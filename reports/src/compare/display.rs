//! Compared values as people read them: a value in its unit, a change with its sign and
//! interval, a p-value, the method a comparison used — shared by every renderer.

use std::fmt::Write as _;

use super::{Change, Check, Comparison, Unit};
use crate::text::human_us;

/// A compared value in its unit: `12.3ms`, `1520.4/s`, `0.12%`, `3000`.
pub fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Micros => human_us(v),
        Unit::PerSecond => format!("{v:.1}/s"),
        Unit::Fraction => format!("{:.2}%", v * 100.0),
        Unit::Level => format!("{v:.0}"),
    }
}

/// The delta of a check with its sign and, when it moved, which way: `+12.3% (worse)`.
pub fn delta(c: &Check) -> String {
    let mut out = String::new();
    match c.delta {
        Some(0.0) => out.push_str("±0.0%"),
        Some(d) => {
            let _ = write!(out, "{:+.1}%", d * 100.0);
        }
        None if c.new == c.base => out.push_str("±0"),
        None => out.push_str("new"),
    }
    out
}

/// Relative changes beyond this (×11) are shown as `>+1000%`: an interval that wide (one
/// degree of freedom at a Holm-corrected level) says "cannot tell", whatever its digits.
pub const SHOWN_MAX: f64 = 10.0;

/// A relative change with its sign: `+12.3%`; `>+1000%` beyond [`SHOWN_MAX`].
pub fn signed_pct(v: f64) -> String {
    if v > SHOWN_MAX {
        format!(">{:+.0}%", SHOWN_MAX * 100.0)
    } else {
        format!("{:+.1}%", v * 100.0)
    }
}

/// A tested check's change with its interval, `+12.6% [+3.1%, +22.9%]`; `–` when untested.
pub fn interval(c: &Check) -> String {
    match &c.estimate {
        Some(e) => format!(
            "{} [{}, {}]",
            signed_pct(e.change),
            signed_pct(e.low),
            signed_pct(e.high)
        ),
        None => "–".to_string(),
    }
}

/// A confidence or probability in percent with as many decimals as it needs: `95%`,
/// `99.17%`, `99.9983%`.
pub fn percent(v: f64) -> String {
    let pct = v * 100.0;
    for decimals in 0..6 {
        let text = format!("{pct:.decimals$}");
        let back: f64 = text.parse().unwrap_or(pct);
        if (back - pct).abs() < 0.05 * (100.0 - pct).max(1e-9) || decimals == 5 {
            return format!("{text}%");
        }
    }
    format!("{pct}%")
}

/// A p-value: `p=0.0004`, `p<1e-6`.
pub fn p_value(p: f64) -> String {
    if p < 1e-6 {
        "p<1e-6".to_string()
    } else if p < 0.001 {
        format!("p={p:.1e}")
    } else {
        format!("p={p:.3}")
    }
}

/// The interval, confidence and p-value of a check in one phrase: `+12.6% [+3.1%, +22.9%] at
/// 99.2% confidence, p=0.0004`; the note when it was not tested.
pub fn tested(c: &Check) -> String {
    match &c.estimate {
        Some(e) => format!(
            "{} at {} confidence, {}",
            interval(c),
            percent(e.confidence),
            p_value(e.p)
        ),
        None => c.note.clone().unwrap_or_else(|| "not tested".to_string()),
    }
}

/// How a comparison was made, in one sentence: the design, whether run-to-run noise was
/// measured, the false-alarm rate with the number of checks it was corrected for, the
/// minimum effect and the sample floor.
pub fn method(c: &Comparison) -> String {
    let mut out = format!(
        "{}{}; false-alarm rate {} for the whole comparison (Holm over {} gated check{}",
        c.design,
        match (c.noise_profile_runs, c.run_to_run) {
            (Some(n), _) => format!(", run-to-run noise from an A/A profile of {n} runs"),
            (None, true) => ", run-to-run noise measured".to_string(),
            (None, false) => ", run-to-run noise not measured (one run a side)".to_string(),
        },
        percent(c.alpha),
        c.tests(true),
        if c.tests(true) == 1 { "" } else { "s" }
    );
    let reported = c.tests(false);
    if reported > 0 {
        let _ = write!(
            out,
            "; {reported} reported check{} corrected apart",
            if reported == 1 { "" } else { "s" }
        );
    }
    let _ = write!(
        out,
        "); minimum effect ±{} (latencies at least {}); at least {} samples",
        percent(c.min_effect),
        human_us(c.floor_us),
        c.min_samples
    );
    out
}

/// The warning a comparison of single runs carries.
pub const SINGLE_RUN_WARNING: &str = "one run a side: the noise between runs is not measured, so the false-alarm rate holds only if runs differ by their own noise; compare against several baselines (a history) or A/B rounds";

/// The gate's verdict on the gated checks in one line: failed (some regressed), passed, or
/// passed with the checks it could not judge named by their number — an inconclusive check
/// neither passes nor fails, and a gate where every check is inconclusive says so.
pub fn gate_verdict(c: &Comparison) -> String {
    let gated = c.checks.iter().filter(|k| k.gated).count();
    let regressed = c.regressions();
    let inconclusive = c
        .checks
        .iter()
        .filter(|k| k.gated && k.change == Change::Inconclusive)
        .count();
    let s = if gated == 1 { "" } else { "s" };
    if gated == 0 {
        "gate: nothing to judge (no gated metric is in the runs)".to_string()
    } else if regressed > 0 {
        format!("gate failed: {regressed} of {gated} gated check{s} regressed")
    } else if inconclusive == gated {
        format!(
            "gate inconclusive: none of {gated} gated check{s} could be told from ±{} at the requested confidence (too few samples or runs); nothing regressed",
            percent(c.min_effect)
        )
    } else if inconclusive > 0 {
        format!(
            "gate passed: no gated check regressed; {inconclusive} of {gated} inconclusive (too few samples or runs to tell ±{})",
            percent(c.min_effect)
        )
    } else {
        format!("gate passed: none of {gated} gated check{s} regressed")
    }
}

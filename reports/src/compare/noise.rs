//! The A/A noise report: from runs of one unchanged build, each compared statistic's
//! run-to-run spread, the spread one run's own seconds show, and the smallest change a gate
//! could detect with runs this noisy — so a team picks its minimum effect from evidence.
//!
//! The smallest detectable change (minimum detectable effect) is for a stated design (how
//! many baseline runs against how many new runs, or how many A/B rounds), at the
//! comparison's false-alarm rate spread Bonferroni-wise over the gated statistics (Holm's
//! first, strictest step) and a stated power: `exp((t(1 − α/2m) + t(power)) · se) − 1` with
//! the standard error and degrees of freedom that design would have. A second figure adds
//! the minimum effect the gate also requires. When the runs spread more than their own
//! seconds explain (an F test of run-to-run against within-run variance), comparing single
//! runs would understate the noise, and the line says so. Saved as JSON, the report is also a
//! noise profile ([`GateOptions::noise_profile`](super::GateOptions::noise_profile)): its
//! run-to-run spreads, pooled into later comparisons of the same scenario, let even single
//! runs be judged against the noise between runs (make it with the scope those comparisons
//! use, e.g. every metric for the one-baseline `compare`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::display;
use super::engine::{measure, plan};
use super::{combine, CompareError, GateOptions, Labeled, Unit};
use crate::stats;
use crate::text::{self, human_us};

/// The gate design a minimum detectable effect is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseDesign {
    /// `baselines` baseline runs against `new` new runs.
    Unpaired {
        /// Baseline runs.
        baselines: usize,
        /// New runs.
        new: usize,
    },
    /// `pairs` alternating A/B rounds.
    Paired {
        /// Rounds.
        pairs: usize,
    },
}

impl std::str::FromStr for NoiseDesign {
    type Err = String;

    /// `history:N` (N baseline runs against one new run), `single` (one against one) or
    /// `ab:N` (N alternating A/B rounds).
    fn from_str(text: &str) -> Result<NoiseDesign, String> {
        let bad = || {
            format!(
                "expected a design `history:N`, `single` or `ab:N` (N at least 1), got `{text}`"
            )
        };
        let count = |n: &str| n.trim().parse::<usize>().ok().filter(|&n| n >= 1);
        match text.trim().split_once(':') {
            None if text.trim() == "single" => Ok(NoiseDesign::Unpaired {
                baselines: 1,
                new: 1,
            }),
            Some(("history", n)) => count(n)
                .map(|baselines| NoiseDesign::Unpaired { baselines, new: 1 })
                .ok_or_else(bad),
            Some(("ab", n)) => count(n)
                .map(|pairs| NoiseDesign::Paired { pairs })
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// One statistic's noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseLine {
    /// The metric key.
    pub metric: String,
    /// The statistic: `p50`, `p95`, `p99`, `rate`, `peak`.
    pub stat: String,
    /// The unit of `mean`.
    pub unit: super::Unit,
    /// Whether the statistic gates (it counts in the correction).
    pub gated: bool,
    /// Its mean over the runs.
    pub mean: f64,
    /// Run-to-run spread: the relative standard deviation between runs.
    pub run_to_run: Option<f64>,
    /// Within-run spread: the relative standard error of one run's value from its seconds.
    pub within_run: Option<f64>,
    /// p-value of "runs spread no more than their seconds explain" (F test).
    pub excess_p: Option<f64>,
    /// The smallest relative change the design detects at the stated rate and power.
    pub mde: Option<f64>,
    /// The same with the minimum effect the gate also requires.
    pub detectable: Option<f64>,
    /// Why a figure is missing, or a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The A/A noise report of runs of one build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// The scenario.
    pub scenario: String,
    /// How many runs.
    pub runs: usize,
    /// The false-alarm rate of a comparison.
    pub alpha: f64,
    /// The power the detectable changes are for.
    pub power: f64,
    /// The minimum effect.
    pub min_effect: f64,
    /// The design the detectable changes are for.
    pub design: NoiseDesign,
    /// Gated statistics the rate is spread over.
    pub tests: usize,
    /// Differences of scenario or load shape that `force` let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// Metrics missing from some runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// One line per statistic, gated first.
    pub lines: Vec<NoiseLine>,
}

/// The noise of `runs` (all of one unchanged build) for a gate of `design`, at `opts.alpha`,
/// with detectable changes at `power` (0.8 is usual).
pub fn noise_report(
    runs: &[Labeled<'_>],
    opts: &GateOptions,
    design: NoiseDesign,
    power: f64,
) -> Result<NoiseReport, CompareError> {
    if runs.len() < 2 {
        return Err(CompareError::TooFewRuns {
            what: "runs of one build",
            needed: 2,
            got: runs.len(),
        });
    }
    let reference = runs[0].run;
    let mismatches = super::engine::unlike(reference, &runs[1..]);
    if !mismatches.is_empty() && !opts.force {
        return Err(CompareError::Unlike(mismatches));
    }
    let planned = plan(&opts.scope, runs, runs);
    let (measured, unmatched) = measure(&planned, runs, &runs[..1])?;
    let tests = measured
        .iter()
        .filter(|m| m.gated && m.missing.is_none())
        .count()
        .max(1);
    let alpha_each = opts.alpha / tests as f64;
    let mut lines = Vec::new();
    for m in &measured {
        let mut line = NoiseLine {
            metric: m.key.to_string(),
            stat: m.stat.name(),
            unit: m.unit,
            gated: m.gated,
            mean: 0.0,
            run_to_run: None,
            within_run: None,
            excess_p: None,
            mde: None,
            detectable: None,
            note: m.missing.clone(),
        };
        if m.missing.is_none() {
            line.mean = m.base.iter().map(|r| r.value).sum::<f64>() / m.base.len() as f64;
            if m.base.iter().all(|r| r.none) {
                line.note = Some("none in any run".to_string());
            } else {
                fill(
                    &mut line,
                    &m.base,
                    design,
                    alpha_each,
                    power,
                    opts.min_effect,
                );
            }
        }
        lines.push(line);
    }
    Ok(NoiseReport {
        scenario: reference.scenario.clone(),
        runs: runs.len(),
        alpha: opts.alpha,
        power,
        min_effect: opts.min_effect,
        design,
        tests,
        mismatches,
        unmatched,
        lines,
    })
}

/// The spreads and detectable changes of one statistic.
fn fill(
    line: &mut NoiseLine,
    runs: &[super::estimate::RunEstimate],
    design: NoiseDesign,
    alpha_each: f64,
    power: f64,
    min_effect: f64,
) {
    let (between, df, within, within_df) = combine::spread(runs);
    // A model's floor (binomial, Poisson) has no estimation error: infinite degrees of
    // freedom, which the F and t functions take as a large number.
    let within_df = within_df.min(1e6);
    line.run_to_run = Some(between.sqrt().exp() - 1.0);
    line.within_run = Some(within.sqrt().exp() - 1.0);
    let excess =
        (within > 0.0 && within_df > 0.0).then(|| stats::f_upper(between / within, df, within_df));
    line.excess_p = excess;
    let per_run = between.max(within);
    let per_run_df = within_df / runs.len() as f64;
    let (se, design_df) = match design {
        NoiseDesign::Unpaired { baselines, new } if baselines + new >= 3 => (
            (per_run * (1.0 / baselines as f64 + 1.0 / new.max(1) as f64)).sqrt(),
            (baselines + new - 2) as f64,
        ),
        // One run a side: the comparison sees within-run noise only.
        NoiseDesign::Unpaired { .. } => ((2.0 * within).sqrt(), 2.0 * per_run_df),
        NoiseDesign::Paired { pairs } if pairs >= 2 => {
            ((2.0 * per_run / pairs as f64).sqrt(), (pairs - 1) as f64)
        }
        NoiseDesign::Paired { .. } => ((2.0 * within).sqrt(), 2.0 * per_run_df),
    };
    let single = matches!(
        design,
        NoiseDesign::Unpaired {
            baselines: 1,
            new: 1
        } | NoiseDesign::Paired { pairs: 0 | 1 }
    );
    if single && excess.is_some_and(|p| p < 0.05) {
        line.note = Some(
            "runs spread more than their own seconds explain: single runs would understate the noise; compare against several baselines or A/B rounds"
                .to_string(),
        );
    }
    if design_df <= 0.0 || !se.is_finite() {
        line.note
            .get_or_insert_with(|| "too few runs or batches for the design".to_string());
        return;
    }
    let t_alpha = stats::t_quantile(1.0 - alpha_each / 2.0, design_df);
    let t_power = stats::t_quantile(power, design_df);
    line.mde = Some(((t_alpha + t_power) * se).exp() - 1.0);
    line.detectable = Some(
        ((t_alpha + t_power) * se)
            .max((1.0 + min_effect).ln() + t_power * se)
            .exp()
            - 1.0,
    );
}

fn pct(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(v) if v > display::SHOWN_MAX => format!(">{:.0}%", display::SHOWN_MAX * 100.0),
        Some(v) => format!("{:.1}%", v * 100.0),
    }
}

fn mean_text(line: &NoiseLine) -> String {
    match line.unit {
        Unit::Micros => human_us(line.mean),
        unit => display::value(unit, line.mean),
    }
}

impl NoiseReport {
    fn design_text(&self) -> String {
        match self.design {
            NoiseDesign::Unpaired { baselines, new } => {
                format!("{baselines} baseline runs against {new} new run(s)")
            }
            NoiseDesign::Paired { pairs } => format!("{pairs} A/B rounds"),
        }
    }

    fn headline(&self) -> String {
        format!(
            "A/A noise of {} runs of `{}`: smallest detectable change for {} at a {}% false-alarm rate over {} gated statistics and {}% power; minimum effect {}%",
            self.runs,
            self.scenario,
            self.design_text(),
            self.alpha * 100.0,
            self.tests,
            self.power * 100.0,
            self.min_effect * 100.0
        )
    }

    /// The report as aligned plain text.
    pub fn to_text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        for m in &self.mismatches {
            let _ = writeln!(out, "  forced: {m}");
        }
        let _ = writeln!(
            out,
            "  {:<48} {:<5} {:>10} {:>11} {:>11} {:>10} {:>11}",
            "metric", "stat", "mean", "run-to-run", "within-run", "MDE", "detectable"
        );
        for l in &self.lines {
            let _ = writeln!(
                out,
                "{} {:<48} {:<5} {:>10} {:>11} {:>11} {:>10} {:>11}{}",
                if l.gated { "*" } else { " " },
                l.metric,
                l.stat,
                mean_text(l),
                pct(l.run_to_run),
                pct(l.within_run),
                pct(l.mde),
                pct(l.detectable),
                l.note
                    .as_deref()
                    .map(|n| format!(" — {n}"))
                    .unwrap_or_default()
            );
        }
        if !self.unmatched.is_empty() {
            let _ = writeln!(out, "  not compared: {}", self.unmatched.join(", "));
        }
        out.push_str("  (* gated)\n");
        out
    }

    /// The report as a Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("### A/A noise\n\n{}.\n\n", text::md(&self.headline()));
        out.push_str("| metric | stat | gated | mean | run-to-run | within-run | MDE | detectable | note |\n| --- | --- | --- | --: | --: | --: | --: | --: | --- |\n");
        for l in &self.lines {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                text::md(&l.metric),
                l.stat,
                if l.gated { "yes" } else { "" },
                mean_text(l),
                pct(l.run_to_run),
                pct(l.within_run),
                pct(l.mde),
                pct(l.detectable),
                text::md(l.note.as_deref().unwrap_or(""))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designs_parse_by_name_and_count() {
        assert_eq!(
            "history:9".parse(),
            Ok(NoiseDesign::Unpaired {
                baselines: 9,
                new: 1
            })
        );
        assert_eq!(
            "single".parse(),
            Ok(NoiseDesign::Unpaired {
                baselines: 1,
                new: 1
            })
        );
        assert_eq!("ab:10".parse(), Ok(NoiseDesign::Paired { pairs: 10 }));
        assert_eq!(
            "ab:0".parse::<NoiseDesign>().unwrap_err(),
            "expected a design `history:N`, `single` or `ab:N` (N at least 1), got `ab:0`"
        );
        assert!("pairs:3".parse::<NoiseDesign>().is_err());
    }
}

//! From per-run estimates to one estimate of the change: the difference of mean logarithms
//! (unpaired baselines against new runs, or paired A/B rounds), its standard error and
//! degrees of freedom.
//!
//! Each run's logarithm carries two noises: the run's own (its within-run variance, from its
//! seconds) and the run's offset from other runs of the same build (machine state, timer
//! lag, placement: the run-to-run noise). With two or more runs on a side (or two or more
//! pairs) the spread of the runs' values measures both together, with `runs − groups`
//! degrees of freedom; the per-run variance used is the larger of that spread and the mean
//! within-run variance (the spread of a few runs can come out smaller than what each run's
//! own data shows, and cannot truly be), and the test keeps the spread's degrees of freedom.
//! Taking the larger and keeping the smaller degrees of freedom can only widen the interval,
//! so the false-alarm rate stays at or below the stated one (the "ad hoc" variance correction
//! of Knapp & Hartung in meta-analysis, which faces the same few-studies problem). With one
//! run on each side the run-to-run noise cannot be measured: the within-run variances alone
//! are used (Welch–Satterthwaite degrees of freedom) and the result says so.

use super::estimate::RunEstimate;

/// The estimated change of one statistic on the log scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Combined {
    /// `ln(new / base)`.
    pub d: f64,
    /// Its standard error.
    pub se: f64,
    /// Degrees of freedom of `se` (infinite when the variance is known to be 0).
    pub df: f64,
    /// Whether run-to-run noise was measured (two or more runs or pairs on some side).
    pub run_to_run: bool,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Welch–Satterthwaite degrees of freedom of a sum of variance estimates `(var, df)`.
fn satterthwaite(parts: &[(f64, f64)]) -> f64 {
    let total: f64 = parts.iter().map(|(v, _)| v).sum();
    let denominator: f64 = parts
        .iter()
        .filter(|(v, _)| *v > 0.0)
        .map(|(v, df)| if *df > 0.0 { v * v / df } else { f64::INFINITY })
        .sum();
    if total <= 0.0 || denominator <= 0.0 {
        f64::INFINITY
    } else {
        total * total / denominator
    }
}

/// Sum of squares around the mean and the count.
fn sum_squares(ys: &[f64]) -> (f64, usize) {
    let m = mean(ys.iter().copied());
    (ys.iter().map(|y| (y - m).powi(2)).sum(), ys.len())
}

/// The mean within-run variance of `runs` and its degrees of freedom.
fn within(runs: &[RunEstimate]) -> (f64, f64) {
    (
        mean(runs.iter().map(|r| r.var)),
        runs.iter().map(|r| r.df).sum(),
    )
}

/// Baselines against new runs. `prior` is a run-to-run variance measured before (an A/A
/// noise profile: variance of the logarithm and its degrees of freedom), pooled with the
/// spread of these runs.
pub(crate) fn unpaired(
    base: &[RunEstimate],
    new: &[RunEstimate],
    prior: Option<(f64, f64)>,
) -> Combined {
    let (k, m) = (base.len() as f64, new.len() as f64);
    let yb: Vec<f64> = base.iter().map(|r| r.y).collect();
    let yn: Vec<f64> = new.iter().map(|r| r.y).collect();
    let d = mean(yn.iter().copied()) - mean(yb.iter().copied());
    let (wb, dfb) = within(base);
    let (wn, dfn) = within(new);
    let (ssb, nb) = sum_squares(&yb);
    let (ssn, nn) = sum_squares(&yn);
    let (prior_ss, prior_df) = prior.map_or((0.0, 0.0), |(var, df)| (var * df, df));
    let df_runs = (nb + nn).saturating_sub(2) as f64 + prior_df;
    if df_runs <= 0.0 {
        let var = wb + wn;
        return Combined {
            d,
            se: var.sqrt(),
            df: satterthwaite(&[(wb, dfb), (wn, dfn)]),
            run_to_run: false,
        };
    }
    let spread = (ssb + ssn + prior_ss) / df_runs;
    let var = spread.max(wb) / k + spread.max(wn) / m;
    Combined {
        d,
        se: var.sqrt(),
        df: df_runs,
        run_to_run: true,
    }
}

/// Paired rounds `(a, b)`: the change is `b` against `a`, round by round.
pub(crate) fn paired(pairs: &[(RunEstimate, RunEstimate)]) -> Combined {
    let diffs: Vec<f64> = pairs.iter().map(|(a, b)| b.y - a.y).collect();
    let d = mean(diffs.iter().copied());
    let n = pairs.len();
    if n < 2 {
        let parts: Vec<(f64, f64)> = pairs
            .iter()
            .flat_map(|(a, b)| [(a.var, a.df), (b.var, b.df)])
            .collect();
        return Combined {
            d,
            se: parts.iter().map(|(v, _)| v).sum::<f64>().sqrt(),
            df: satterthwaite(&parts),
            run_to_run: false,
        };
    }
    let (ss, _) = sum_squares(&diffs);
    let spread = ss / (n - 1) as f64;
    let within = mean(pairs.iter().map(|(a, b)| a.var + b.var));
    Combined {
        d,
        se: (spread.max(within) / n as f64).sqrt(),
        df: (n - 1) as f64,
        run_to_run: true,
    }
}

/// The spread of runs of one build: `(run-to-run variance of the logarithm, its degrees of
/// freedom, mean within-run variance, its degrees of freedom)`.
pub(crate) fn spread(runs: &[RunEstimate]) -> (f64, f64, f64, f64) {
    let ys: Vec<f64> = runs.iter().map(|r| r.y).collect();
    let (ss, n) = sum_squares(&ys);
    let df = n.saturating_sub(1) as f64;
    let (w, wdf) = within(runs);
    (if df > 0.0 { ss / df } else { 0.0 }, df, w, wdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(y: f64, var: f64, df: f64) -> RunEstimate {
        RunEstimate {
            value: y.exp(),
            y,
            var,
            df,
            none: false,
            independent: false,
        }
    }

    #[test]
    fn one_run_a_side_uses_within_run_noise_with_satterthwaite_df() {
        let c = unpaired(&[est(1.0, 0.01, 4.0)], &[est(1.2, 0.01, 4.0)], None);
        assert!((c.d - 0.2).abs() < 1e-12);
        assert!((c.se - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((c.df - 8.0).abs() < 1e-9, "{}", c.df);
        assert!(!c.run_to_run);
    }

    #[test]
    fn run_spread_wins_when_larger_and_within_noise_is_the_floor() {
        let base = [
            est(1.0, 0.0001, 5.0),
            est(1.2, 0.0001, 5.0),
            est(0.8, 0.0001, 5.0),
        ];
        let c = unpaired(&base, &[est(1.0, 0.0001, 5.0)], None);
        // Spread 0.04 with 2 df; variance 0.04/3 + 0.04/1.
        assert!((c.se - (0.04f64 / 3.0 + 0.04).sqrt()).abs() < 1e-12);
        assert_eq!(c.df, 2.0);
        assert!(c.run_to_run);
        let quiet = [est(1.0, 0.01, 5.0), est(1.0, 0.01, 5.0)];
        let c = unpaired(&quiet, &[est(1.0, 0.01, 5.0)], None);
        assert!((c.se - (0.01f64 / 2.0 + 0.01).sqrt()).abs() < 1e-12);
        assert_eq!(c.df, 1.0);
    }

    #[test]
    fn a_noise_profile_measures_run_to_run_noise_for_single_runs() {
        // Within-run noise 0.0001, but runs of this build spread 0.01 (9 df, from a profile).
        let c = unpaired(
            &[est(1.0, 0.0001, 5.0)],
            &[est(1.1, 0.0001, 5.0)],
            Some((0.01, 9.0)),
        );
        assert!((c.se - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(c.df, 9.0);
        assert!(c.run_to_run);
    }

    #[test]
    fn pairs_cancel_what_both_arms_of_a_round_share() {
        // A drift of +0.1 per round hits both arms: the differences are constant.
        let pairs: Vec<_> = (0..4)
            .map(|i| {
                let drift = 0.1 * f64::from(i);
                (
                    est(1.0 + drift, 0.0001, 5.0),
                    est(1.05 + drift, 0.0001, 5.0),
                )
            })
            .collect();
        let c = paired(&pairs);
        assert!((c.d - 0.05).abs() < 1e-12);
        assert!(
            (c.se - (0.0002f64 / 4.0).sqrt()).abs() < 1e-12,
            "within floor"
        );
        assert_eq!(c.df, 3.0);
    }
}

//! How the noise-aware gate judges real runs: A runs of one build (A/A) and B runs of a
//! changed one, run as alternating rounds (A B, B A, …), each `DIR/<round>/run.json`.
//!
//! `cargo run --release -p reports --example gate_study -- A_DIR B_DIR` prints
//! - every ordered pair of A runs compared one against one (`compare`: what
//!   `report compare A B` does today), and how many flagged a regression; then the same pairs
//!   with the run-to-run noise of the other A runs pooled in (an A/A noise profile);
//! - every A run against the other A runs as its history (`compare_runs`, thresholds'
//!   metrics): the false alarms of the recommended design;
//! - every B run against all A runs as history, and B against A round by round
//!   (`compare_paired`): how often the change is caught;
//! - the A/A noise report for a history of the A runs.

use std::path::{Path, PathBuf};

use reports::compare::NoiseDesign;
use reports::history::{read_runs, Loaded};
use reports::{
    compare, compare_paired, compare_runs, noise_report, Change, CompareOptions, Comparison,
    GateOptions, Labeled,
};

/// The runs `DIR/<round>/run.json`, by round number.
fn rounds(dir: &Path) -> Vec<Loaded> {
    let mut paths: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let round = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((round, e.path().join("run.json")))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|(_, p)| read_runs(&[&p]).unwrap_or_else(|e| panic!("{e}")).remove(0))
        .collect()
}

fn regressions(c: &Comparison) -> Vec<String> {
    c.checks
        .iter()
        .filter(|k| k.gated && k.change == Change::Regressed)
        .map(|k| {
            format!(
                "{} {} {}",
                k.metric,
                k.stat,
                reports::compare::display::interval(k)
            )
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a_dir, b_dir] = args.as_slice() else {
        eprintln!("usage: gate_study A_DIR B_DIR");
        std::process::exit(2);
    };
    let a = rounds(Path::new(a_dir));
    let b = rounds(Path::new(b_dir));
    let gate = GateOptions::default();

    let mut flagged = 0;
    let mut pairs = 0;
    for (i, x) in a.iter().enumerate() {
        for (j, y) in a.iter().enumerate() {
            if i == j {
                continue;
            }
            let c = compare(&x.run, &y.run, &CompareOptions::default()).expect("alike");
            pairs += 1;
            if c.regressed() {
                flagged += 1;
                if flagged <= 3 {
                    println!("  A{i} -> A{j}: {}", regressions(&c).join("; "));
                }
            }
        }
    }
    println!("A/A one against one, every metric: {flagged} of {pairs} ordered pairs flagged a regression");

    let single = NoiseDesign::Unpaired {
        baselines: 1,
        new: 1,
    };
    let every = GateOptions {
        scope: reports::Scope::Every,
        ..GateOptions::default()
    };
    let (mut flagged, mut pairs) = (0, 0);
    for i in 0..a.len() {
        for j in 0..a.len() {
            if i == j {
                continue;
            }
            let others: Vec<Labeled<'_>> = a
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != i && *k != j)
                .map(|(_, l)| l.labeled())
                .collect();
            let profile = noise_report(&others, &every, single, 0.8).expect("alike");
            let opts = GateOptions {
                noise_profile: Some(profile),
                ..every.clone()
            };
            let c = compare_runs(&[a[i].labeled()], &[a[j].labeled()], &opts).expect("alike");
            pairs += 1;
            if c.regressed() {
                flagged += 1;
                if flagged <= 3 {
                    println!("  A{i} -> A{j}: {}", regressions(&c).join("; "));
                }
            }
        }
    }
    println!(
        "A/A one against one, every metric, with a profile of the other {} runs: {flagged} of {pairs} flagged",
        a.len() - 2
    );

    let mut flagged = 0;
    for i in 0..a.len() {
        let history: Vec<Labeled<'_>> = a
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| l.labeled())
            .collect();
        let c = compare_runs(&history, &[a[i].labeled()], &gate).expect("alike");
        if c.regressed() {
            flagged += 1;
            println!("  A{i} against the others: {}", regressions(&c).join("; "));
        }
    }
    println!(
        "A/A against a history of the other {} runs, thresholds' metrics: {flagged} of {} flagged",
        a.len() - 1,
        a.len()
    );

    let history: Vec<Labeled<'_>> = a.iter().map(Loaded::labeled).collect();
    let mut caught = 0;
    for y in &b {
        let c = compare_runs(&history, &[y.labeled()], &gate).expect("alike");
        caught += usize::from(c.regressed());
    }
    println!(
        "B against a history of {} A runs: {caught} of {} flagged a regression",
        a.len(),
        b.len()
    );
    let mut caught = 0;
    let mut pairs = 0;
    for x in &a {
        for y in &b {
            let c = compare(&x.run, &y.run, &CompareOptions::default()).expect("alike");
            pairs += 1;
            caught += usize::from(c.regressed());
        }
    }
    println!("B against single A runs, every metric: {caught} of {pairs} pairs flagged");
    let profile = noise_report(&history, &every, single, 0.8).expect("alike");
    let opts = GateOptions {
        noise_profile: Some(profile),
        ..every.clone()
    };
    let (mut caught, mut pairs) = (0, 0);
    for x in &a {
        for y in &b {
            let c = compare_runs(&[x.labeled()], &[y.labeled()], &opts).expect("alike");
            pairs += 1;
            caught += usize::from(c.regressed());
        }
    }
    println!(
        "B against single A runs, every metric, with the A/A profile: {caught} of {pairs} pairs flagged"
    );
    let n = a.len().min(b.len());
    let arm_a: Vec<Labeled<'_>> = a[..n].iter().map(Loaded::labeled).collect();
    let arm_b: Vec<Labeled<'_>> = b[..n].iter().map(Loaded::labeled).collect();
    let c = compare_paired(&arm_a, &arm_b, &gate).expect("alike");
    println!(
        "B against A in {n} A/B rounds: {}",
        if c.regressed() {
            format!("regressed: {}", regressions(&c).join("; "))
        } else {
            "not flagged".to_string()
        }
    );
    print!("{}", reports::summary::comparison_text(&c, false));

    let design = NoiseDesign::Unpaired {
        baselines: a.len() - 1,
        new: 1,
    };
    let report = noise_report(&history, &gate, design, 0.8).expect("alike");
    print!("{}", report.to_text());
}

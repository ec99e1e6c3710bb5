//! The baseline history folder: adding keeps the newest N, reading takes files and folders
//! oldest first, unlike runs are refused (or replaced when asked), bad files are named with
//! line and column, and a comparison against the folder names the run that does not fit.

mod common;

use std::path::PathBuf;

use common::{synthetic_run, Noise};
use reports::history::{self, HistoryError};
use reports::{compare_runs, GateOptions, Labeled, Run};

const QUIET: Noise = Noise {
    run_sd: 0.005,
    second_sd: 0.01,
    rho: 0.3,
    sample_sd: 0.1,
    seconds: 6,
    per_second: 100,
};

/// A run that started `minute` minutes after the fixture's start.
fn run_at(rng: &mut fastrand::Rng, minute: i64) -> Run {
    let mut run = synthetic_run(rng, &QUIET, 1.0, 0.0);
    run.started_at += chrono::Duration::minutes(minute);
    run
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn adding_keeps_the_newest_runs_and_reading_returns_them_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("perf-history");
    let mut rng = fastrand::Rng::with_seed(1);
    // Added out of order: the history keeps the newest by start time, not by arrival.
    for minute in [3, 0, 4, 1, 2] {
        let added = history::add(&dir, &run_at(&mut rng, minute), 3, false).unwrap();
        assert!(added.path.exists());
    }
    assert_eq!(
        names(&dir),
        vec![
            "run-20261125T192200.123Z.json",
            "run-20261125T192300.123Z.json",
            "run-20261125T192400.123Z.json",
        ]
    );
    let added = history::add(&dir, &run_at(&mut rng, 5), 3, false).unwrap();
    assert_eq!(
        added.pruned,
        vec![dir.join("run-20261125T192200.123Z.json")]
    );

    let loaded = history::read_runs(&[&dir]).unwrap();
    let minutes: Vec<i64> = loaded
        .iter()
        .map(|l| (l.run.started_at - common::started_at()).num_minutes())
        .collect();
    assert_eq!(minutes, vec![3, 4, 5]);
    // A folder and a file together; the comparison takes them as they are named.
    let extra = tmp.path().join("new.json");
    std::fs::write(&extra, run_at(&mut rng, 9).to_json_pretty().unwrap()).unwrap();
    let all = history::read_runs(&[&extra, &dir]).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].path, extra, "sorted by start time");
    let base: Vec<Labeled<'_>> = all[..3].iter().map(|l| l.labeled()).collect();
    let c = compare_runs(&base, &[all[3].labeled()], &GateOptions::default()).unwrap();
    assert!(c.run_to_run && !c.regressed(), "{:?}", c.checks);
}

#[test]
fn a_folder_of_run_output_folders_reads_each_run_json() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(4);
    // As `loadgen run --out DIR/N` (and `loadgen ab`) lay them out; other files are not runs.
    for (round, minute) in [("02", 1), ("01", 0)] {
        let out = tmp.path().join(round);
        std::fs::create_dir(&out).unwrap();
        std::fs::write(
            out.join("run.json"),
            run_at(&mut rng, minute).to_json_pretty().unwrap(),
        )
        .unwrap();
        std::fs::write(out.join("loadgen.log"), "not a run").unwrap();
    }
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let loaded = history::read_runs(&[tmp.path()]).unwrap();
    let paths: Vec<PathBuf> = loaded.iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            tmp.path().join("01/run.json"),
            tmp.path().join("02/run.json")
        ]
    );
}

#[test]
fn unlike_runs_are_refused_or_replaced_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut rng = fastrand::Rng::with_seed(2);
    history::add(&dir, &run_at(&mut rng, 0), 10, false).unwrap();
    let mut longer = run_at(&mut rng, 1);
    longer.meta = Some(serde_json::json!({"planned_duration_s": 60.0}));
    let err = history::add(&dir, &longer, 10, false).unwrap_err();
    let old = dir.join("run-20261125T192000.123Z.json");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: holds runs unlike the new one ({}: load shape `planned_duration_s`: 60.0 vs 6.0); replace them to start the history afresh",
            dir.display(),
            old.display()
        )
    );
    assert_eq!(names(&dir).len(), 1, "nothing changed");
    let added = history::add(&dir, &longer, 10, true).unwrap();
    assert_eq!(added.replaced, vec![old]);
    assert_eq!(names(&dir), vec!["run-20261125T192100.123Z.json"]);

    // Read back with a run of the old shape: the comparison names the odd one out.
    let odd = tmp.path().join("odd.json");
    std::fs::write(&odd, run_at(&mut rng, 2).to_json_pretty().unwrap()).unwrap();
    let loaded = history::read_runs(&[&dir, &odd]).unwrap();
    let base: Vec<Labeled<'_>> = loaded.iter().map(|l| l.labeled()).collect();
    let err = compare_runs(&base[..1], &base[1..], &GateOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "{}: load shape `planned_duration_s`: 60.0 vs 6.0",
            odd.display()
        )),
        "{err}"
    );
}

#[test]
fn bad_files_and_folders_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h");
    std::fs::create_dir(&dir).unwrap();
    let err = history::read_runs(&[&dir]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no run records (*.json, or */run.json) in this folder",
            dir.display()
        )
    );
    let bad = dir.join("broken.json");
    std::fs::write(&bad, "{\n  \"version\": 1,\n  \"scenario\": oops\n}\n").unwrap();
    let err = history::read_runs(&[&dir]).unwrap_err();
    assert!(matches!(err, HistoryError::Parse { .. }));
    assert!(
        err.to_string().starts_with(&format!(
            "{}:3:15: not a pushbench run file: ",
            bad.display()
        )),
        "{err}"
    );
    // Adding to a folder holding a broken file changes nothing.
    let mut rng = fastrand::Rng::with_seed(3);
    assert!(history::add(&dir, &run_at(&mut rng, 0), 5, false).is_err());
    assert_eq!(names(&dir), vec!["broken.json"]);

    let missing = PathBuf::from(tmp.path()).join("nope.json");
    let err = history::read_runs(&[&missing]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
    let err = history::add(&dir, &run_at(&mut rng, 0), 0, false).unwrap_err();
    assert_eq!(err.to_string(), "a history keeps at least 1 run, got 0");
}

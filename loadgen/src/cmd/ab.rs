//! `loadgen ab SCENARIO --a NAME=VALUE… --b NAME=VALUE… --rounds N`: one scenario run against a
//! baseline (arm A) and a candidate (arm B) alternately in one job — A B, B A, A B, … so a
//! drift of the machine favours neither arm — then B compared with A round by round
//! (`reports::compare_paired`): what the two runs of a round share cancels out.
//!
//! The arms differ only by the scenario variables `--a` and `--b` set: two targets
//! (`TARGET=http://127.0.0.1:8081` for the baseline build, `…:8082` for the candidate), or two
//! configurations of the embedded gateway. Each run is a `loadgen run` process of its own (the
//! same binary), so every run starts the same way and one run's state cannot leak into the
//! next; its record goes to `DIR/a/NN/run.json` or `DIR/b/NN/run.json` with its output in
//! `loadgen.log` beside it, and `loadgen report compare --paired DIR/a DIR/b` judges them again
//! with other flags. An interrupt (Ctrl-C, SIGTERM) is passed to the run in progress, which
//! writes its record; the complete rounds are compared, and the exit code is 105.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use reports::compare::{ab_schedule, display, shape_differences, Arm};
use reports::history::{read_run, Loaded};
use reports::{Comparison, Labeled};

use super::compare::{check_asked_keys, gate_options, write_comparison, PAIRED_PROFILE};
use super::exit;
use super::report::{write_reports, ReportError};
use crate::cli::AbArgs;
use crate::plan::Plan;

/// Runs `loadgen ab …`; returns the exit code.
pub fn main(args: &AbArgs) -> i32 {
    match execute(args) {
        Ok(code) => code,
        Err(e) => super::fail(e.exit_code(), &e.to_string()),
    }
}

/// One arm: its name, folder name and variables (the shared `-e` pairs, then its own).
struct ArmSpec {
    arm: Arm,
    vars: Vec<String>,
}

impl ArmSpec {
    fn folder(&self) -> &'static str {
        match self.arm {
            Arm::A => "a",
            Arm::B => "b",
        }
    }

    fn name(&self) -> &'static str {
        match self.arm {
            Arm::A => "A",
            Arm::B => "B",
        }
    }
}

/// The interrupt, as the arms' runs must get it: once per Ctrl-C or SIGTERM, to the run in
/// progress only (each run has a process group of its own, so a terminal's Ctrl-C reaches it
/// through here and not twice).
#[derive(Clone, Default)]
struct Interrupt {
    asked: Arc<AtomicBool>,
    child: Arc<AtomicI32>,
}

impl Interrupt {
    fn install() -> Interrupt {
        let interrupt = Interrupt::default();
        let handler = interrupt.clone();
        let result = ctrlc::set_handler(move || {
            handler.asked.store(true, Ordering::SeqCst);
            let pid = handler.child.load(Ordering::SeqCst);
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
        });
        if let Err(e) = result {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
        interrupt
    }

    fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }
}

/// A plan of `file` with `vars`, or the one-line reason naming the arm.
fn plan(args: &AbArgs, spec: &ArmSpec) -> Result<Plan, ReportError> {
    let plan_args = crate::cli::PlanArgs {
        file: args.file.clone(),
        env: spec.vars.clone(),
        segment: None,
        ignore_limits: args.ignore_limits,
    };
    super::check::load_plan(&plan_args)
        .map_err(|e| ReportError::BadInput(format!("arm {}: {e}", spec.name())))
}

/// Refuses arms whose runs could not be compared (another scenario name or load shape), before
/// anything is sent.
fn check_alike(a: &Plan, b: &Plan, force: bool) -> Result<(), ReportError> {
    let meta_a = crate::run::meta::meta(a, "", None, None);
    let meta_b = crate::run::meta::meta(b, "", None, None);
    let why = shape_differences(
        (&a.scenario.name, Some(&meta_a)),
        (&b.scenario.name, Some(&meta_b)),
    );
    if why.is_empty() || force {
        return Ok(());
    }
    Err(ReportError::BadInput(format!(
        "--a and --b make unlike runs (A vs B: {}); pass --force to compare anyway",
        why.join("; ")
    )))
}

/// The output folder, which must be new or empty: runs of another A/B job in it would be
/// compared as rounds of this one.
fn out_dir(args: &AbArgs, scenario: &str) -> Result<PathBuf, ReportError> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::run::default_out_dir(&format!("ab-{scenario}")));
    let occupied = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(ReportError::BadInput(format!(
            "{}: already holds files; an A/B job needs a folder of its own",
            out.display()
        )));
    }
    Ok(out)
}

/// How one arm's run ended.
enum Ended {
    /// The record was written; `true` when its thresholds passed.
    Ran(bool),
    /// Interrupted (the record holds what was measured until then).
    Interrupted,
}

/// The last `error:` line of a run's output (else its last line): why it failed.
fn failure_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output");
    common::printable::printable(last, 300).into_owned()
}

/// Runs one arm of one round as a `loadgen run` process writing into `folder`.
fn run_arm(
    args: &AbArgs,
    spec: &ArmSpec,
    folder: &Path,
    interrupt: &Interrupt,
) -> Result<Ended, ReportError> {
    use std::os::unix::process::CommandExt as _;
    std::fs::create_dir_all(folder).map_err(|e| {
        ReportError::BadInput(format!("{}: cannot create folder: {e}", folder.display()))
    })?;
    let log_path = folder.join("loadgen.log");
    let log = File::create(&log_path)
        .map_err(|e| ReportError::BadInput(format!("{}: cannot write: {e}", log_path.display())))?;
    let err_log = log
        .try_clone()
        .map_err(|e| ReportError::Harness(format!("{}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| ReportError::Harness(format!("cannot find the loadgen binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(&args.file)
        .arg("--out")
        .arg(folder)
        .arg("--quiet");
    for pair in &spec.vars {
        cmd.arg("-e").arg(pair);
    }
    if args.ignore_limits {
        cmd.arg("--ignore-limits");
    }
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| ReportError::Harness(format!("cannot start loadgen run: {e}")))?;
    interrupt
        .child
        .store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    let status = child.wait();
    interrupt.child.store(0, Ordering::SeqCst);
    let status =
        status.map_err(|e| ReportError::Harness(format!("loadgen run did not end: {e}")))?;
    match status.code() {
        Some(exit::OK) => Ok(Ended::Ran(true)),
        Some(exit::THRESHOLD) => Ok(Ended::Ran(false)),
        Some(exit::INTERRUPTED) => Ok(Ended::Interrupted),
        Some(exit::BAD_INPUT) => Err(ReportError::BadInput(format!(
            "arm {} ({}): {}",
            spec.name(),
            log_path.display(),
            failure_line(&log_path)
        ))),
        code => Err(ReportError::Harness(format!(
            "arm {} ended with {} ({}): {}",
            spec.name(),
            code.map_or_else(|| "a signal".to_string(), |c| format!("exit {c}")),
            log_path.display(),
            failure_line(&log_path)
        ))),
    }
}

/// The rounds run so far: each complete round's A and B record, and the rounds whose B run
/// failed its thresholds.
#[derive(Default)]
struct Rounds {
    complete: Vec<(PathBuf, PathBuf)>,
    b_failed: Vec<usize>,
    interrupted: bool,
}

/// Runs the rounds in `ab_schedule` order until done or interrupted.
fn run_rounds(
    args: &AbArgs,
    arms: &[ArmSpec; 2],
    out: &Path,
    interrupt: &Interrupt,
) -> Result<Rounds, ReportError> {
    let total = usize::from(args.rounds);
    let mut rounds = Rounds::default();
    for (i, order) in ab_schedule(total).into_iter().enumerate() {
        let round = i + 1;
        let mut records: [PathBuf; 2] = Default::default();
        for arm in order {
            if interrupt.asked() {
                rounds.interrupted = true;
                return Ok(rounds);
            }
            let spec = &arms[usize::from(arm == Arm::B)];
            let folder = out.join(spec.folder()).join(format!("{round:02}"));
            let started = Instant::now();
            let ended = run_arm(args, spec, &folder, interrupt)?;
            eprintln!(
                "round {round}/{total} {}: {} ({:.1} s{})",
                spec.name(),
                folder.join("run.json").display(),
                started.elapsed().as_secs_f64(),
                match ended {
                    Ended::Ran(true) => "",
                    Ended::Ran(false) => ", thresholds failed",
                    Ended::Interrupted => ", interrupted",
                }
            );
            match ended {
                Ended::Interrupted => {
                    rounds.interrupted = true;
                    return Ok(rounds);
                }
                Ended::Ran(false) if arm == Arm::B => rounds.b_failed.push(round),
                Ended::Ran(_) => {}
            }
            records[usize::from(arm == Arm::B)] = folder.join("run.json");
        }
        let [a, b] = records;
        if round == 1 && total > 1 {
            check_keys_after_first_round(args, &b, total)?;
        }
        rounds.complete.push((a, b));
    }
    Ok(rounds)
}

/// The `--gate` keys checked against the first round's B run: a key that selects no metric
/// stops the job after one round instead of after all of them (its runs stay on disk).
fn check_keys_after_first_round(args: &AbArgs, b: &Path, total: usize) -> Result<(), ReportError> {
    let options = gate_options(&args.compare)?;
    let run = read_run(b).map_err(|e| ReportError::Harness(e.to_string()))?;
    let label = b.display().to_string();
    let runs = [Labeled {
        label: &label,
        run: &run,
    }];
    check_asked_keys(&options, &runs).map_err(|e| match e {
        ReportError::BadInput(m) => {
            ReportError::BadInput(format!("{m}; stopped after round 1 of {total}"))
        }
        other => other,
    })
}

/// B compared with A over the complete rounds.
fn compare_rounds(
    rounds: &[(PathBuf, PathBuf)],
    args: &AbArgs,
) -> Result<(Comparison, Loaded), ReportError> {
    let load = |path: &Path| -> Result<Loaded, ReportError> {
        let run = read_run(path).map_err(|e| ReportError::Harness(e.to_string()))?;
        Ok(Loaded {
            path: path.to_path_buf(),
            label: path.display().to_string(),
            run,
        })
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for (pa, pb) in rounds {
        a.push(load(pa)?);
        b.push(load(pb)?);
    }
    let arm_a: Vec<Labeled<'_>> = a.iter().map(Loaded::labeled).collect();
    let arm_b: Vec<Labeled<'_>> = b.iter().map(Loaded::labeled).collect();
    let options = gate_options(&args.compare)?;
    check_asked_keys(&options, &arm_b)?;
    let c = reports::compare_paired(&arm_a, &arm_b, &options)
        .map_err(|e| ReportError::BadInput(e.to_string()))?;
    let last_b = b
        .pop()
        .ok_or_else(|| ReportError::Harness("no complete A/B round to compare".to_string()))?;
    Ok((c, last_b))
}

fn execute(args: &AbArgs) -> Result<i32, ReportError> {
    if args.compare.noise_profile.is_some() {
        return Err(ReportError::BadInput(PAIRED_PROFILE.into()));
    }
    let options = gate_options(&args.compare)?;
    let arms = [
        ArmSpec {
            arm: Arm::A,
            vars: [args.env.clone(), args.a.clone()].concat(),
        },
        ArmSpec {
            arm: Arm::B,
            vars: [args.env.clone(), args.b.clone()].concat(),
        },
    ];
    let plan_a = plan(args, &arms[0])?;
    let plan_b = plan(args, &arms[1])?;
    check_alike(&plan_a, &plan_b, options.force)?;
    let out = out_dir(args, &plan_a.scenario.name)?;
    eprintln!(
        "A/B: `{}` for up to {} per run, {} rounds (A B, B A, …) into {}",
        common::printable::printable(&plan_a.scenario.name, 100),
        common::duration::format(plan_a.duration),
        args.rounds,
        out.display()
    );
    let interrupt = Interrupt::install();
    let rounds = run_rounds(args, &arms, &out, &interrupt)?;
    if rounds.complete.is_empty() {
        eprintln!("interrupted before a round was complete: nothing to compare");
        return Ok(exit::INTERRUPTED);
    }
    let (c, last_b) = compare_rounds(&rounds.complete, args)?;
    write_comparison(
        &c,
        &last_b.run,
        reports::Format::Json,
        Some(&out.join("comparison.json")),
    )?;
    print!("{}", reports::summary::comparison_text(&c, false));
    write_reports(&last_b.run, &args.reports, Some(&c))?;
    for spec in &args.reports {
        eprintln!("{} report: {}", spec.format, spec.path.display());
    }
    eprintln!("{}", display::gate_verdict(&c));
    if !rounds.b_failed.is_empty() {
        eprintln!(
            "thresholds failed in the B run of round(s) {}",
            rounds
                .b_failed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if rounds.interrupted {
        eprintln!(
            "interrupted: compared the {} complete round(s); the runs are in {}",
            rounds.complete.len(),
            out.display()
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(if c.regressed() || !rounds.b_failed.is_empty() {
        exit::THRESHOLD
    } else {
        exit::OK
    })
}

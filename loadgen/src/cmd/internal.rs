//! The hidden subcommands `loadgen run` starts as child processes: `__shard` (a device swarm
//! shard speaking JSON lines on stdin/stdout) and `__room` (a room of the embedded gateway).

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sync::lock;
use tokio::sync::mpsc;

use super::exit;
use crate::engine::swarm::control::{Command, Event, ShardPlan};
use crate::engine::swarm::{net, shard};

/// `loadgen __room ARGS…`: a room process of the embedded gateway.
pub fn room(args: Vec<String>) -> i32 {
    if testbed::gateway::room::run_process(args) == std::process::ExitCode::SUCCESS {
        exit::OK
    } else {
        exit::HARNESS
    }
}

/// `loadgen __shard`: a shard process. Reads the plan and commands from stdin, writes events
/// to stdout, one JSON object per line. Returns the process exit code.
pub fn shard() -> i32 {
    let fd_limit = net::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shard: cannot start the async runtime: {e}");
            return exit::HARNESS;
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    let (first_tx, first_rx) = std::sync::mpsc::channel::<ShardPlan>();
    // stdin is read on a plain thread: a blocking read must not hold a runtime worker.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut first = Some(first_tx);
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Command>(&line) {
                Ok(Command::Plan(p)) => {
                    if let Some(f) = first.take() {
                        let _ = f.send(p);
                    }
                }
                Ok(cmd) => {
                    if tx.send(cmd).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("shard: bad command line: {e}"),
            }
        }
        // stdin closed: the coordinator is gone or done; the channel closing stops the shard.
    });
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));
    let emit = move |ev: Event| {
        if let Ok(line) = serde_json::to_string(&ev) {
            let mut o = lock(&out);
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    };
    emit(Event::Up);
    let Ok(plan) = first_rx.recv() else {
        eprintln!("shard: no plan on stdin");
        return exit::HARNESS;
    };
    runtime.block_on(shard::serve(plan, rx, emit, fd_limit));
    runtime.shutdown_timeout(Duration::from_secs(1));
    exit::OK
}

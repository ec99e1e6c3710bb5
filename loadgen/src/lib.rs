//! pushbench's load generator as a library: scenario files, plans, engines and runs. The
//! `loadgen` binary is a thin layer over [`cli::main`], so every flag can be tested
//! in-process.

#![deny(missing_docs)]

pub mod cli;
pub mod collect;
pub mod engine;
pub mod feeder;
pub mod journey;
pub mod plan;
pub mod progress;
pub mod record;
pub mod replay;
pub mod report_cmd;
pub mod run;
pub mod scenario;
pub mod stop;
pub mod swarm;
pub mod target;

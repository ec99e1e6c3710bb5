//! pushbench's load generator as a library. Its folders follow a run's pipeline, each layer
//! using only the ones below it (`scripts/modgraph.py loadgen` checks that no module circle
//! exists; ARCHITECTURE.md is the map):
//!
//! - [`cli`] (the command line's types) and [`cmd`] (one file per subcommand: the only place
//!   that prints and picks exit codes);
//! - [`run`]: executing a plan — target, engines, harvest, progress, the run record;
//! - [`engine`]: the engines that send load (closed model on goose, the open-rate driver,
//!   replay pacing, the device swarm); [`proxy`]: the recording proxy of `loadgen record`;
//! - [`journey`] (step semantics every engine shares, value extraction) and [`delivery`]
//!   (end-to-end delivery tracking between senders and devices);
//! - [`plan`]: what engines read — schedules, the swarm's layout, the replay plan, `check`'s
//!   text; [`scenario`]: the YAML types, loading, validation and schema;
//! - [`stop`]: the run's stop switch, which every layer watches;
//! - [`worker`]: `loadgen worker`, a Locust worker running the plan under a Locust master
//!   (beside [`run`]: the master, not the scenario's stages, sets the load).
//!
//! The `loadgen` binary is a thin layer over [`cmd::main`], so every flag can be tested
//! in-process.

#![deny(missing_docs)]

pub mod cli;
pub mod cmd;
pub mod delivery;
pub mod engine;
pub mod journey;
pub mod plan;
pub mod proxy;
pub mod run;
pub mod scenario;
pub mod stop;
pub mod worker;

//! CSV data feeders: the tables a scenario's `data:` section loads (checked before the run),
//! from which each iteration takes a row and sees its columns as `{{data.NAME.COLUMN}}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::scenario::{FeedOrder, Feeder};

/// A CSV file that cannot be used; the CLI exits 2.
#[derive(Debug, thiserror::Error)]
pub enum FeederError {
    /// The file could not be read.
    #[error("{path}: cannot read data file for feeder `{name}`: {source}")]
    Io {
        /// Feeder name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid CSV.
    #[error("{path}:{line}: feeder `{name}`: {message}")]
    Malformed {
        /// Feeder name.
        name: String,
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// One loaded feeder.
#[derive(Debug)]
struct Table {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    order: FeedOrder,
    next: AtomicUsize,
    vars: Vec<String>,
}

/// All feeders of a scenario.
#[derive(Debug, Default)]
pub struct Feeders {
    tables: Vec<Table>,
}

impl Feeders {
    /// Loads every feeder; CSV paths are relative to `base_dir` (the scenario's folder).
    pub fn load(defs: &BTreeMap<String, Feeder>, base_dir: &Path) -> Result<Feeders, FeederError> {
        let mut tables = Vec::new();
        for (name, def) in defs {
            let path = base_dir.join(&def.csv);
            let io = |source| FeederError::Io {
                name: name.clone(),
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(io)?;
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(file);
            let malformed = |line: u64, message: String| FeederError::Malformed {
                name: name.clone(),
                path: path.clone(),
                line,
                message,
            };
            let columns: Vec<String> = reader
                .headers()
                .map_err(|e| malformed(csv_line(&e).unwrap_or(1), csv_message(&e)))?
                .iter()
                .map(str::to_string)
                .collect();
            if columns.is_empty() || columns.iter().any(|c| c.trim().is_empty()) {
                return Err(malformed(1, "the first row must name every column".into()));
            }
            let mut rows = Vec::new();
            for record in reader.records() {
                let record =
                    record.map_err(|e| malformed(csv_line(&e).unwrap_or(0), csv_message(&e)))?;
                rows.push(record.iter().map(str::to_string).collect());
            }
            if rows.is_empty() {
                return Err(malformed(1, "no data rows after the header".into()));
            }
            let vars = columns.iter().map(|c| format!("data.{name}.{c}")).collect();
            tables.push(Table {
                name: name.clone(),
                columns,
                rows,
                order: def.order,
                next: AtomicUsize::new(0),
                vars,
            });
        }
        Ok(Feeders { tables })
    }

    /// Hands `set` the next row of every feeder, as (`data.NAME.COLUMN`, value) pairs.
    pub fn next_rows(&self, mut set: impl FnMut(&str, &str)) {
        for t in &self.tables {
            let i = match t.order {
                FeedOrder::Sequential => t.next.fetch_add(1, Ordering::Relaxed) % t.rows.len(),
                FeedOrder::Random => fastrand::usize(..t.rows.len()),
            };
            for (var, value) in t.vars.iter().zip(&t.rows[i]) {
                set(var, value);
            }
        }
    }

    /// `name: N rows (col, col)` for each feeder, for `loadgen check`.
    pub fn describe(&self) -> Vec<String> {
        self.tables
            .iter()
            .map(|t| {
                format!(
                    "{}: {} rows ({})",
                    t.name,
                    t.rows.len(),
                    t.columns.join(", ")
                )
            })
            .collect()
    }

    /// True when `var` (`data.NAME.COLUMN`) is a column of a feeder.
    pub fn provides(&self, var: &str) -> bool {
        self.tables.iter().any(|t| t.vars.iter().any(|v| v == var))
    }
}

fn csv_line(e: &csv::Error) -> Option<u64> {
    e.position().map(|p| p.line())
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields like the header row, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

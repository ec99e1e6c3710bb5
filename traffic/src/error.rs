//! Why a recording cannot be read: every error renders as one line naming the file and where
//! in it (record number and byte offset, line, line and column, or HAR entry).

use std::fmt;
use std::path::PathBuf;

/// Where in a file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A GoReplay record: its 1-based number and the byte offset where it starts.
    Record {
        /// 1-based record number.
        number: u64,
        /// Byte offset of the record's first byte (in the decompressed stream for `.gz`).
        offset: u64,
    },
    /// A 1-based line.
    Line(u64),
    /// A 1-based line and column.
    LineColumn(u64, u64),
    /// A HAR entry, 0-based as in `log.entries[N]`.
    Entry(u64),
    /// The file as a whole.
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Record { number, offset } => {
                write!(f, "record {number} (byte offset {offset})")
            }
            Location::Line(l) => write!(f, "{l}"),
            Location::LineColumn(l, c) => write!(f, "{l}:{c}"),
            Location::Entry(n) => write!(f, "log.entries[{n}]"),
            Location::File => Ok(()),
        }
    }
}

/// A recording that cannot be read (bad input: `loadgen` exits 2).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A glob or file name matched nothing.
    #[error("{pattern}: no file matches")]
    NoMatch {
        /// The pattern as given.
        pattern: String,
    },
    /// The format of a file cannot be told from its name or content.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A record, entry or line is malformed.
    #[error("{}{}: {message}", path.display(), at_suffix(at))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// An option is invalid (a bad regex, a zero speed).
    #[error("{0}")]
    Option(String),
}

fn at_suffix(at: &Location) -> String {
    match at {
        Location::File => String::new(),
        Location::Line(_) | Location::LineColumn(..) => format!(":{at}"),
        other => format!(": {other}"),
    }
}

impl ReadError {
    /// True for a malformed record the reader can skip (the `--skip-malformed` case).
    pub fn is_skippable(&self) -> bool {
        matches!(
            self,
            ReadError::Malformed {
                at: Location::Record { .. } | Location::Line(_) | Location::Entry(_),
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_place() {
        let e = ReadError::Malformed {
            path: "a.gor".into(),
            at: Location::Record {
                number: 3,
                offset: 120,
            },
            message: "bad header".into(),
        };
        assert_eq!(
            e.to_string(),
            "a.gor: record 3 (byte offset 120): bad header"
        );
        let e = ReadError::Malformed {
            path: "x.log".into(),
            at: Location::Line(7),
            message: "no request".into(),
        };
        assert_eq!(e.to_string(), "x.log:7: no request");
        let e = ReadError::Malformed {
            path: "x.har".into(),
            at: Location::LineColumn(2, 5),
            message: "expected value".into(),
        };
        assert_eq!(e.to_string(), "x.har:2:5: expected value");
    }
}

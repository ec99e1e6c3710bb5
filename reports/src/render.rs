//! Every report format by name, and rendering a run in one of them: what `--format` and
//! `--report FORMAT=FILE` select.

use std::fmt;
use std::str::FromStr;

use crate::compare::Comparison;
use crate::hlog::HlogError;
use crate::run::Run;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One self-contained HTML page with charts.
    Html,
    /// Markdown for a PR comment.
    Markdown,
    /// JUnit XML for a CI test tab.
    Junit,
    /// HdrHistogram interval log.
    Hlog,
    /// The run record itself.
    Json,
    /// The terminal table.
    Text,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 6] = [
        Format::Html,
        Format::Markdown,
        Format::Junit,
        Format::Hlog,
        Format::Json,
        Format::Text,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Markdown => "md",
            Format::Junit => "junit",
            Format::Hlog => "hlog",
            Format::Json => "json",
            Format::Text => "text",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Markdown),
            "junit" | "xml" => Ok(Format::Junit),
            "hlog" => Ok(Format::Hlog),
            "json" => Ok(Format::Json),
            "text" | "txt" => Ok(Format::Text),
            _ => Err(format!(
                "expected a report format ({}), got `{s}`",
                Format::ALL.map(Format::name).join(", ")
            )),
        }
    }
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The interval log could not be written.
    #[error(transparent)]
    Hlog(#[from] HlogError),
    /// The run could not be serialised.
    #[error("cannot serialise the run: {0}")]
    Json(#[from] serde_json::Error),
}

/// `run` (with its baseline comparison, when given) rendered as `format`.
pub fn render(
    format: Format,
    run: &Run,
    comparison: Option<&Comparison>,
) -> Result<Vec<u8>, RenderError> {
    Ok(match format {
        Format::Html => crate::html::render(run, comparison).into_bytes(),
        Format::Markdown => crate::markdown::render(run, comparison).into_bytes(),
        Format::Junit => crate::junit::render(run, comparison).into_bytes(),
        Format::Hlog => crate::hlog::render(run)?,
        Format::Json => {
            let mut text = run.to_json_pretty()?;
            text.push('\n');
            text.into_bytes()
        }
        Format::Text => {
            let mut text = crate::summary::render_table(run, &Default::default());
            if let Some(c) = comparison {
                text.push('\n');
                text.push_str(&crate::summary::comparison_text(c, false));
            }
            text.into_bytes()
        }
    })
}

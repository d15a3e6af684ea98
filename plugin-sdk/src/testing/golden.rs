//! Golden fixtures: events in, expected outcomes out.
//!
//! A fixture is a pair of files in one directory:
//!
//! * `NAME.events.jsonl`: one game wire object per line, exactly as the
//!   game sends it (flat, string values). Empty lines and lines starting
//!   with `#` are skipped. Event ids are 1, 2, 3… in file order, counting
//!   every decoded event, subscribed or not.
//! * `NAME.expected.jsonl`: the outcomes in emission order, one per line:
//!   `{"player":"<guid>","code":"…","kind":"unlock","event_id":N}` or
//!   `{"player":"<guid>","code":"…","kind":"progress","current":C,"target":T,"event_id":N}`.
//!   Empty lines and `#` lines are skipped here too.
//!
//! A fixture passes when the pack gives exactly the expected outcomes with
//! all events in one batch, with one event per batch on fresh instances,
//! and with several pseudo-random batch splits. Set `OPM_BLESS=1` to
//! (re)write the expected files from the one-batch run after reviewing the
//! change.

use std::path::{Path, PathBuf};

use opm_model::plugin::OutcomeKind;
use serde::{Deserialize, Serialize};

use super::{Harness, HarnessError, Split, prepare};
use crate::Pack;

/// One expected outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenOutcome {
    /// Player GUID.
    pub player: String,
    pub code: String,
    #[serde(flatten)]
    pub kind: OutcomeKind,
    /// Id of the event that caused it.
    pub event_id: u64,
}

impl GoldenOutcome {
    /// The golden form of an outcome the production runtime committed
    /// (for `opm-stats plugin test`, which runs the same fixtures).
    pub fn from_host(outcome: &opm_model::plugin::Outcome) -> GoldenOutcome {
        GoldenOutcome {
            player: outcome.player.to_string(),
            code: outcome.code.to_string(),
            kind: outcome.kind.clone(),
            event_id: outcome.event_id,
        }
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("outcome serialises")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads an expected-outcomes file.
pub fn read_expected(path: &Path) -> Result<Vec<GoldenOutcome>, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            serde_json::from_str(line).map_err(|e| HarnessError::Golden {
                path: path.display().to_string(),
                line: n + 1,
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// Writes an expected-outcomes file.
pub fn write_expected(path: &Path, outcomes: &[GoldenOutcome]) -> Result<(), HarnessError> {
    let mut text = String::new();
    for o in outcomes {
        text.push_str(&o.to_line());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(io(path))
}

/// Compares outcomes with the expected ones; the error says how many of
/// each there are and shows the first difference.
pub fn compare(
    what: &str,
    expected: &[GoldenOutcome],
    actual: &[GoldenOutcome],
) -> Result<(), HarnessError> {
    if expected == actual {
        Ok(())
    } else {
        Err(HarnessError::Mismatch(describe_mismatch(
            what, expected, actual,
        )))
    }
}

/// The expected-outcomes file beside an events file
/// (`NAME.events.jsonl` → `NAME.expected.jsonl`).
pub fn expected_path(events_path: &Path) -> Result<PathBuf, HarnessError> {
    let name = events_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".events.jsonl"))
        .ok_or_else(|| {
            HarnessError::Mismatch(format!(
                "{} is not a NAME.events.jsonl file",
                events_path.display()
            ))
        })?;
    Ok(events_path.with_file_name(format!("{name}.expected.jsonl")))
}

fn describe_mismatch(what: &str, expected: &[GoldenOutcome], actual: &[GoldenOutcome]) -> String {
    let first = expected.iter().zip(actual).position(|(e, a)| e != a);
    let at = first.unwrap_or(expected.len().min(actual.len()));
    let line = |v: &[GoldenOutcome]| {
        v.get(at)
            .map_or("(nothing)".to_string(), GoldenOutcome::to_line)
    };
    format!(
        "{what}: {} outcomes expected, {} produced; first difference at outcome {}:\n  expected {}\n  actual   {}",
        expected.len(),
        actual.len(),
        at + 1,
        line(expected),
        line(actual)
    )
}

/// The splits every fixture is checked with.
fn splits() -> Vec<(Split, bool)> {
    vec![
        (Split::Whole, false),
        (Split::Each, true),
        (Split::Seeded(1), false),
        (Split::Seeded(2), false),
        (Split::Seeded(3), true),
    ]
}

/// Checks one fixture given its events file; the expected file is found
/// beside it (`NAME.events.jsonl` → `NAME.expected.jsonl`).
pub fn check_golden<P: Pack>(events_path: &Path) -> Result<(), HarnessError> {
    let expected_path = expected_path(events_path)?;
    let name = expected_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".expected.jsonl"))
        .unwrap_or_default()
        .to_string();
    let text = std::fs::read_to_string(events_path).map_err(io(events_path))?;
    let events = prepare(&text)?;
    let bless = std::env::var_os("OPM_BLESS").is_some_and(|v| v == "1");
    let expected = if bless {
        let outcomes = Harness::<P>::new()?.run(&events, &Split::Whole)?;
        write_expected(&expected_path, &outcomes)?;
        outcomes
    } else {
        read_expected(&expected_path)?
    };
    for (split, fresh) in splits() {
        let actual = Harness::<P>::new()?
            .fresh_instances(fresh)
            .run(&events, &split)?;
        let what = format!(
            "{name} with {split:?}{}",
            if fresh { " on fresh instances" } else { "" }
        );
        compare(&what, &expected, &actual)?;
    }
    Ok(())
}

/// Checks every `*.events.jsonl` fixture in a directory and panics with
/// every failure; meant to be the body of a `#[test]`:
///
/// ```ignore
/// #[test]
/// fn golden() {
///     opm_plugin_sdk::testing::golden_dir::<MyPack>(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
/// }
/// ```
pub fn golden_dir<P: Pack>(dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".events.jsonl")))
        .collect();
    fixtures.sort();
    assert!(
        !fixtures.is_empty(),
        "no *.events.jsonl fixtures in {}",
        dir.display()
    );
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|f| {
            check_golden::<P>(f)
                .err()
                .map(|e| format!("{}: {e}", f.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
}

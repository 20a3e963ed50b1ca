//! What `lvg`, `lvol` and `filesystem` share: reading lvm2's JSON reports and running a planned
//! list of commands.
//!
//! lvm2's human output changes between versions and locales, so state is read only from
//! `--reportformat json --units b --nosuffix` reports: every number is a byte count or a count of
//! extents, as a string. Commands run with the task's environment (`LVM_SYSTEM_DIR` and friends
//! pass through) plus the C locale, as community.general runs them. A plan is a list of
//! [`Step`]s; the first one that fails ends the task with the module's message followed by the
//! command's own words (lvm2's errors name the numbers: extents needed and available).

use super::sysutil;
use crate::modules::{Ctx, ModuleError, Outcome};
use crate::transport::ExecResult;
use std::collections::BTreeMap;

/// The locale community.general forces on lvm2 and filesystem tools.
pub const LANG_C: &[(&str, &str)] = &[("LANG", "C"), ("LC_ALL", "C"), ("LC_MESSAGES", "C")];

/// One row of a report: field name to its text.
pub type Row = BTreeMap<String, String>;

/// Run a program with the task's environment and the C locale.
pub async fn run(ctx: &Ctx, argv: &[String]) -> Result<ExecResult, ModuleError> {
    sysutil::run_env(ctx, argv, LANG_C).await
}

/// A report's rows, or the failed command (rc, stderr) when the tool exits non-zero (a VG that
/// does not exist is rc 5).
pub enum Report {
    Rows(Vec<Row>),
    Failed(ExecResult),
}

/// `tool --reportformat json --units b --nosuffix -o FIELDS ARGS...`; `kind` is the report's key
/// (`vg`, `lv`, `pv`).
pub async fn report(
    ctx: &Ctx,
    tool: &str,
    kind: &str,
    fields: &str,
    args: &[&str],
) -> Result<Report, ModuleError> {
    let mut argv = sysutil::argv(&[
        tool,
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        fields,
    ]);
    argv.extend(args.iter().map(|s| s.to_string()));
    let r = run(ctx, &argv).await?;
    if r.rc != 0 {
        return Ok(Report::Failed(r));
    }
    parse_report(&r.stdout_text(), kind)
        .map(Report::Rows)
        .map_err(|e| ModuleError::Failed(format!("cannot read the JSON report of {tool}: {e}")))
}

/// The rows under `report[*].<kind>` of an lvm2 JSON report.
pub fn parse_report(text: &str, kind: &str) -> Result<Vec<Row>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let reports = v["report"]
        .as_array()
        .ok_or_else(|| "no `report` list".to_string())?;
    let mut rows = vec![];
    for rep in reports {
        for item in rep[kind].as_array().into_iter().flatten() {
            let obj = item
                .as_object()
                .ok_or_else(|| format!("a `{kind}` entry is not an object"))?;
            rows.push(
                obj.iter()
                    .map(|(k, v)| {
                        let s = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// A field as text ("" when the report lacks it).
pub fn field<'a>(row: &'a Row, name: &str) -> &'a str {
    row.get(name).map(String::as_str).unwrap_or("")
}

/// A numeric field (bytes or a count).
pub fn num(row: &Row, name: &str) -> Result<u64, ModuleError> {
    let s = field(row, name).trim();
    s.parse::<u64>()
        .or_else(|_| {
            s.parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0)
                .map(|f| f as u64)
                .ok_or(())
        })
        .map_err(|_| ModuleError::Failed(format!("lvm2 reported {name} = {s:?}, not a number")))
}

/// A command of a plan, and the module's message should it fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub argv: Vec<String>,
    pub fail: String,
}

impl Step {
    pub fn new(argv: Vec<String>, fail: impl Into<String>) -> Step {
        Step {
            argv,
            fail: fail.into(),
        }
    }
}

/// The failed outcome of a step: its message, the tool's last words, `rc` and `err`.
pub fn step_failed(fail: &str, r: &ExecResult) -> Outcome {
    let err = r.stderr_text();
    let said: Vec<&str> = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("WARNING:"))
        .collect();
    let msg = if said.is_empty() {
        fail.to_string()
    } else {
        format!("{fail}: {}", said.join("; "))
    };
    Outcome::failed(msg)
        .with("rc", r.rc as i64)
        .with("err", err.clone())
}

/// Run the steps in order; `Ok(None)` when all succeeded, else the failed outcome.
pub async fn run_steps(ctx: &Ctx, steps: &[Step]) -> Result<Option<Outcome>, ModuleError> {
    for s in steps {
        let r = run(ctx, &s.argv).await?;
        if r.rc != 0 {
            return Ok(Some(
                step_failed(&s.fail, &r).with("cmd", shell_words::join(&s.argv)),
            ));
        }
    }
    Ok(None)
}

/// lvm2's size units (`-L` takes both cases as powers of 1024): bytes per unit.
pub fn unit_bytes(unit: char) -> Option<u64> {
    Some(match unit.to_ascii_lowercase() {
        'b' => 1,
        's' => 512,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        't' => 1 << 40,
        'p' => 1 << 50,
        'e' => 1 << 60,
        _ => return None,
    })
}

/// `bytes` in `unit`, rounded to two decimals as lvm2 prints it (community.general reports sizes
/// so).
pub fn in_unit(bytes: u64, unit: char) -> f64 {
    let per = unit_bytes(unit).unwrap_or(1 << 20) as f64;
    ((bytes as f64 / per) * 100.0).round() / 100.0
}

/// Host-side `realpath -m` of each path (LVM names devices by their real path), in order.
pub async fn realpaths(ctx: &Ctx, paths: &[String]) -> Result<Vec<String>, ModuleError> {
    if paths.is_empty() {
        return Ok(vec![]);
    }
    let mut argv = sysutil::argv(&["realpath", "-m", "--"]);
    argv.extend(paths.iter().cloned());
    let r = sysutil::run_ok(ctx, &argv).await?;
    let out: Vec<String> = r.stdout_text().lines().map(str::to_string).collect();
    if out.len() != paths.len() {
        return Err(ModuleError::Failed(format!(
            "realpath gave {} lines for {} paths",
            out.len(),
            paths.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reports() {
        let j = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"expvg", "vg_size":"205520896", "vg_free":"184549376", "vg_extent_size":"4194304"}
              ]
          }
      ]
  }"#;
        let rows = parse_report(j, "vg").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(field(&rows[0], "vg_name"), "expvg");
        assert_eq!(num(&rows[0], "vg_extent_size").unwrap(), 4194304);
        assert!(num(&rows[0], "vg_name").is_err());
        assert!(parse_report(r#"{"report":[{"vg":[]}]}"#, "vg")
            .unwrap()
            .is_empty());
        assert!(parse_report("nope", "vg").is_err());
    }

    #[test]
    fn units() {
        assert_eq!(unit_bytes('G'), Some(1 << 30));
        assert_eq!(unit_bytes('s'), Some(512));
        assert_eq!(unit_bytes('x'), None);
        assert_eq!(in_unit(92274688, 'm'), 88.0);
        assert_eq!(in_unit(1 << 29, 'g'), 0.5);
    }
}

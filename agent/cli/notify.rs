//! Feedback after a build run (issue 17 item 5): the run's result posted where people look.
//!
//! `--notify-url URL` POSTs a JSON summary (verb, exit code, status, tag, record path, image counts
//! by status, failed images with their errors) to a webhook; `--notify-command CMD` runs `CMD` with
//! `sh -c`, the record's path as `$1` and in `KILN_BUILD_RECORD`, the status in `KILN_BUILD_STATUS`
//! and the summary JSON on stdin. Both run after success and failure; a failing hook is reported
//! on stderr and does not change the run's exit code. The URL is never printed with its query or
//! credentials (webhook tokens live there).

use crate::build::record::BuildRecord;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone, Default)]
pub struct NotifyOpts {
    /// POST a JSON summary of the run (status, tag, record path, images built/unchanged/failed)
    /// to this webhook URL when the run ends, successful or not. `@FILE` reads the URL from FILE
    /// (keeps a token in the URL out of command lines and unit files).
    #[arg(long, value_name = "URL|@FILE")]
    pub notify_url: Option<String>,
    /// Run this command (`sh -c`) when the run ends: the build record's path is `$1` and
    /// `KILN_BUILD_RECORD`, the status `KILN_BUILD_STATUS`, the summary JSON is on stdin.
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,
}

impl NotifyOpts {
    pub fn wanted(&self) -> bool {
        self.notify_url.is_some() || self.notify_command.is_some()
    }
}

/// The summary posted: counts by status from the record when there is one.
pub fn summary(
    verb: &str,
    code: i32,
    record_path: Option<&Path>,
    started: &str,
) -> serde_json::Value {
    let rec = record_path
        .filter(|p| p.exists())
        .and_then(|p| BuildRecord::read(p).ok())
        .filter(|r| r.ended.as_str() >= started);
    let mut counts = serde_json::Map::new();
    let mut failed = Vec::new();
    if let Some(r) = &rec {
        for i in &r.images {
            let k = match i.status.as_str() {
                "pushed" => "built",
                s => s,
            };
            let n = counts.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            counts.insert(k.to_string(), (n + 1).into());
            if !matches!(i.status.as_str(), "pushed" | "unchanged" | "built") {
                failed.push(serde_json::json!({
                    "name": i.name,
                    "status": i.status,
                    "error": i.error.clone().or(i.reason.clone()),
                }));
            }
        }
    }
    serde_json::json!({
        "kiln": "build",
        "verb": verb,
        "status": if code == 0 { "success" } else { "failed" },
        "exit": code,
        "started": started,
        "ended": crate::build::record::now(),
        "tag": rec.as_ref().map(|r| r.tag.clone()),
        "record": rec.as_ref().and(record_path).map(|p| p.display().to_string()),
        "images": counts,
        "failed": failed,
    })
}

/// What `kiln schedule exec` reads from `$KILN_RUN_SUMMARY` for its history: the tag, the image
/// names by outcome and the record's path.
pub fn run_summary(record_path: Option<&Path>, started: &str) -> serde_json::Value {
    let rec = record_path
        .filter(|p| p.exists())
        .and_then(|p| BuildRecord::read(p).ok())
        .filter(|r| r.ended.as_str() >= started);
    let Some(r) = rec else {
        return serde_json::json!({});
    };
    let (mut built, mut unchanged, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for i in &r.images {
        match i.status.as_str() {
            "pushed" | "built" => built.push(i.name.clone()),
            "unchanged" => unchanged.push(i.name.clone()),
            _ => failed.push(i.name.clone()),
        }
    }
    serde_json::json!({
        "tag": r.tag,
        "images": {"built": built, "unchanged": unchanged, "failed": failed},
        "record": record_path.map(|p| p.display().to_string()),
    })
}

/// The URL as it may be printed: scheme, host, port and path only.
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) => format!(
            "{}://{}{}{}",
            p.scheme(),
            p.host_str().unwrap_or(""),
            p.port().map(|x| format!(":{x}")).unwrap_or_default(),
            p.path()
        ),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Post and run the hooks; returns what went wrong (already redacted), if anything.
pub fn send(opts: &NotifyOpts, summary: &serde_json::Value) -> Vec<String> {
    let mut errors = Vec::new();
    let body = serde_json::to_vec(summary).unwrap_or_default();
    if let Some(u) = &opts.notify_url {
        let u = match u.strip_prefix('@') {
            Some(f) => match std::fs::read_to_string(f) {
                Ok(t) => t.trim().to_string(),
                Err(e) => {
                    errors.push(format!("--notify-url @{f}: cannot read the URL: {e}"));
                    return errors;
                }
            },
            None => u.clone(),
        };
        let u = &u;
        let shown = redact_url(u);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let r = rt.map_err(|e| e.to_string()).and_then(|rt| {
            rt.block_on(async {
                let c = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(20))
                    .build()
                    .map_err(|e| e.to_string())?;
                let resp = c
                    .post(u)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", resp.status().as_u16()))
                }
            })
        });
        if let Err(e) = r {
            errors.push(format!("--notify-url {shown}: {e}"));
        }
    }
    if let Some(cmd) = &opts.notify_command {
        use std::io::Write;
        let record = summary["record"].as_str().unwrap_or("").to_string();
        let status = summary["status"].as_str().unwrap_or("").to_string();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .arg("kiln-notify")
            .arg(&record)
            .env("KILN_BUILD_RECORD", &record)
            .env("KILN_BUILD_STATUS", &status)
            .stdin(std::process::Stdio::piped())
            .spawn();
        match child {
            Ok(mut c) => {
                if let Some(mut i) = c.stdin.take() {
                    let _ = i.write_all(&body);
                }
                match c.wait() {
                    Ok(s) if s.success() => {}
                    Ok(s) => errors.push(format!("--notify-command exited with {s}")),
                    Err(e) => errors.push(format!("--notify-command: {e}")),
                }
            }
            Err(e) => errors.push(format!("--notify-command: cannot run sh: {e}")),
        }
    }
    errors
}

/// The record path a build verb's run writes: `kiln_build_record` from `-e`, else
/// `<config path>/kiln/builds/<kolla_tag>.json` as the publish playbook computes it.
pub fn record_path(expr_value: Option<String>) -> Option<PathBuf> {
    expr_value.filter(|s| !s.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_tokens() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example.com:8443/services/T0?token=abc"),
            "https://hooks.example.com:8443/services/T0"
        );
        let s = summary(
            "seed container image build",
            2,
            None,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(s["status"], "failed");
        assert_eq!(s["exit"], 2);
        assert!(s["record"].is_null());
    }
}

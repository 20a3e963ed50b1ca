//! The progress channel end to end: a `shell` task on three real sshd lab hosts, run with
//! `--stream`, prints its lines while it runs, each prefixed with its host (human output) or as
//! `line` events carrying host, label and stream (`--format json`). "Live" is checked by time:
//! the task prints a line, sleeps 2 s, prints another; kiln's stdout must show the first line
//! well before the second (and before the task's result). Also: `kiln_stream_label` labels the
//! lines, a `no_log` task never streams (its output is secret by definition), and without
//! `--stream` nothing streams (Ansible's output, unchanged).

#[path = "lab/mod.rs"]
mod lab;

use kiln::lab::Flavor;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

const BOOK: &str = r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: talk slowly
      shell: "echo first-$(hostname); sleep 2; echo second-$(hostname) >&2; echo third"
    - name: secret
      shell: "echo hidden-output"
      no_log: true
"#;

/// Runs kiln, returning each stdout line with the time it arrived after the start.
fn run_timed(args: &[&str], dir: &std::path::Path) -> (i32, Vec<(Duration, String)>, String) {
    let t0 = Instant::now();
    let mut child = lab::kiln_in(dir, args);
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for l in BufReader::new(out).lines() {
        lines.push((t0.elapsed(), l.unwrap()));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let rc = child.wait().unwrap().code().unwrap_or(-1);
    (rc, lines, err)
}

fn at(lines: &[(Duration, String)], pred: impl Fn(&str) -> bool) -> Option<Duration> {
    lines.iter().find(|(_, l)| pred(l)).map(|(t, _)| *t)
}

#[test]
fn shell_output_streams_live_prefixed_by_host() {
    require_lab!();
    let l = lab::LabGuard::up(
        &lab::spec("stream").with_hosts(3, &[Flavor::Rocky9, Flavor::Ubuntu2204]),
    );
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("book.yml"), BOOK).unwrap();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let hosts: Vec<String> = l.hosts.iter().map(|h| h.name.clone()).collect();

    // human output
    let (rc, lines, err) = run_timed(
        &["-i", &inv, "playbook", "run", "--stream", "book.yml"],
        t.path(),
    );
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(rc, 0, "{}\n{err}", text.join("\n"));
    for h in &hosts {
        let first = at(&lines, |l| l.starts_with(&format!("[{h}] first-")))
            .unwrap_or_else(|| panic!("no streamed first line for {h}:\n{}", text.join("\n")));
        let second = at(&lines, |l| l.starts_with(&format!("[{h}] second-")))
            .unwrap_or_else(|| panic!("no streamed stderr line for {h}:\n{}", text.join("\n")));
        assert!(
            at(&lines, |l| l == format!("[{h}] third")).is_some(),
            "{}",
            text.join("\n")
        );
        let result = at(&lines, |l| l.starts_with(&format!("changed: [{h}]"))).unwrap();
        eprintln!(
            "{h}: first line at {:?}, second at {:?}, result at {:?}",
            first, second, result
        );
        assert!(
            second >= first + Duration::from_millis(1500),
            "{h}: the first line came {:?} before the second: not live",
            second - first
        );
        assert!(first < result, "{h}: streamed line after the result");
    }
    assert!(
        !text.iter().any(|l| l.contains("hidden-output")),
        "a no_log task streamed:\n{}",
        text.join("\n")
    );

    // JSON events, with a label
    let (rc, lines, err) = run_timed(
        &[
            "-i",
            &inv,
            "playbook",
            "run",
            "--format",
            "json",
            "-e",
            "kiln_stream=true",
            "-e",
            "kiln_stream_label=x86_64",
            "book.yml",
        ],
        t.path(),
    );
    assert_eq!(rc, 0, "{err}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for h in &hosts {
        let mine: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"] == "line" && e["host"] == h.as_str())
            .collect();
        assert_eq!(mine.len(), 3, "{h}: {mine:?}");
        assert!(mine.iter().all(|e| e["label"] == "x86_64"), "{mine:?}");
        assert_eq!(mine[0]["stream"], "stdout");
        assert!(mine[0]["text"].as_str().unwrap().starts_with("first-"));
        assert!(
            mine.iter()
                .any(|e| e["stream"] == "stderr"
                    && e["text"].as_str().unwrap().starts_with("second-"))
        );
        // every line event comes before that host's task result
        let pos_result = events
            .iter()
            .position(|e| e["event"] == "task_result" && e["host"] == h.as_str())
            .unwrap();
        let pos_line = events
            .iter()
            .position(|e| e["event"] == "line" && e["host"] == h.as_str())
            .unwrap();
        assert!(pos_line < pos_result);
    }
    assert!(!lines.iter().any(|(_, l)| l.contains("hidden-output")));

    // without --stream: Ansible's output, nothing streamed
    let (rc, lines, _) = run_timed(&["-i", &inv, "playbook", "run", "book.yml"], t.path());
    assert_eq!(rc, 0);
    assert!(
        !lines.iter().any(|(_, l)| l.starts_with('[')),
        "streamed without being asked"
    );
}

//! Transport figures against real lab hosts (not a timed test: `#[ignore]`, run with
//! `cargo test --test transport_bench -- --ignored --nocapture`): connect + agent start per host,
//! a no-op round trip on an open channel, and 1,000 small file writes and 1,000 execs on 3 hosts.

use kiln::lab::{Flavor, Lab, LabSpec};
use kiln::transport::{
    self, ConnSpec, ExecRequest, HostKeyChecking, Session, TransportOptions, WriteRequest,
};
use std::time::{Duration, Instant};

fn spec(lab: &Lab, name: &str) -> ConnSpec {
    let h = lab.host(name).expect("lab host");
    ConnSpec {
        addr: h.addr.to_string(),
        user: Some("root".into()),
        key_files: vec![lab.key.clone()],
        known_hosts: vec![lab.known_hosts.clone()],
        host_key_checking: Some(HostKeyChecking::Strict),
        ..ConnSpec::new(name)
    }
}

fn per(d: Duration, n: usize) -> String {
    format!(
        "{:.3} ms/op ({n} in {:.2} s)",
        d.as_secs_f64() * 1000.0 / n as f64,
        d.as_secs_f64()
    )
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn transport_figures() {
    if !nix::unistd::getuid().is_root()
        || transport::upload::find_agent_binary("x86_64", &TransportOptions::default()).is_none()
    {
        eprintln!("SKIP transport_figures: needs root and the musl agent binary");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::up(
        &LabSpec::new(&format!("ktb{}", std::process::id() % 100000))
            .with_dir(tmp.path().join("lab"))
            .with_hosts(3, &[Flavor::Rocky9]),
    )
    .unwrap();
    let names: Vec<String> = lab.hosts.iter().map(|h| h.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = TransportOptions {
            use_ssh_agent: false,
            read_user_ssh_config: false,
            ..Default::default()
        };
        // first connection uploads the agent
        let t = Instant::now();
        let s = transport::connect(&spec(&lab, &names[0]), &o)
            .await
            .unwrap();
        println!(
            "first connect + upload ({} bytes) + agent start: {:.1} ms",
            o.stats
                .agent_bytes_uploaded
                .load(std::sync::atomic::Ordering::Relaxed),
            t.elapsed().as_secs_f64() * 1000.0
        );
        s.close().await;
        // cached: connect + agent start, 10 times
        let t = Instant::now();
        for _ in 0..10 {
            transport::connect(&spec(&lab, &names[0]), &o)
                .await
                .unwrap()
                .close()
                .await;
        }
        println!(
            "connect + agent start + close (cached agent): {}",
            per(t.elapsed(), 10)
        );
        let mut sessions: Vec<Session> = Vec::new();
        for n in &names {
            sessions.push(transport::connect(&spec(&lab, n), &o).await.unwrap());
        }
        let s = &sessions[0];
        let t = Instant::now();
        for _ in 0..1000 {
            s.ping().await.unwrap();
        }
        println!("no-op round trip, sequential: {}", per(t.elapsed(), 1000));
        let t = Instant::now();
        futures::future::join_all((0..1000).map(|_| s.ping())).await;
        println!("no-op, 1000 in flight at once: {}", per(t.elapsed(), 1000));
        // 1000 writes and 1000 execs on each of 3 hosts, hosts in parallel, sequential per host
        let t = Instant::now();
        futures::future::join_all(sessions.iter().map(|s| async move {
            for i in 0..1000 {
                s.write_file(WriteRequest {
                    path: format!("/tmp/bench-{}", i % 50),
                    content: format!("line {i}\n").into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }))
        .await;
        println!(
            "1000 small file writes x 3 hosts (sequential per host): {}",
            per(t.elapsed(), 3000)
        );
        let t = Instant::now();
        futures::future::join_all(sessions.iter().map(|s| async move {
            for _ in 0..1000 {
                let r = s
                    .exec(ExecRequest {
                        argv: vec!["true".into()],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(r.rc, 0);
            }
        }))
        .await;
        println!(
            "1000 execs of `true` x 3 hosts (sequential per host): {}",
            per(t.elapsed(), 3000)
        );
        let t = Instant::now();
        futures::future::join_all(sessions.iter().map(|s| {
            futures::future::join_all((0..1000).map(move |i| {
                s.write_file(WriteRequest {
                    path: format!("/tmp/benchp-{i}"),
                    content: b"x\n".to_vec(),
                    ..Default::default()
                })
            }))
        }))
        .await;
        println!(
            "1000 small file writes x 3 hosts, all pipelined: {}",
            per(t.elapsed(), 3000)
        );
        for s in &sessions {
            s.close().await;
        }
    });
    lab.down().unwrap();
}

//! Every fault-injection mode of `vbench sim-serve`, observed by a client as the fault it
//! claims to be; and the binary's start-up flags, readiness and SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::sim::*;
use vbench::sim::faults::FaultSpec;
use vbench::sim::{Role, ServeExit, SimConfig};

fn cfg(faults: FaultSpec) -> SimConfig {
    let mut c = SimConfig::new(test_profile(), "m");
    c.role = Role::Simple;
    c.faults = faults;
    c
}

#[tokio::test]
async fn fail_fraction_answers_500_for_that_share_of_requests() {
    let srv = start(cfg(FaultSpec {
        fail_fraction: 0.5,
        fault_seed: 7,
        ..Default::default()
    }))
    .await;
    let c = client();
    let mut failed = 0;
    for _ in 0..40 {
        let s = stream(
            &c,
            &format!("{}/v1/completions", srv.url()),
            &completion_body(10, 2),
        )
        .await;
        match s.status {
            500 => {
                let v: serde_json::Value = serde_json::from_str(&s.body).unwrap();
                assert_eq!(v["error"]["code"], 500);
                failed += 1;
            }
            200 => assert!(s.done()),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (10..=30).contains(&failed),
        "about half of 40 should fail, got {failed}"
    );
    let m = scrape(&c, &srv.url()).await;
    assert_eq!(
        metric(&m, "vbench_sim:faults_injected_total", &[("kind", "fail")]),
        failed as f64
    );
}

#[tokio::test]
async fn cut_streams_end_without_done_after_the_given_tokens() {
    let srv = start(cfg(FaultSpec {
        cut_fraction: 1.0,
        cut_after_tokens: 3,
        ..Default::default()
    }))
    .await;
    let s = stream(
        &client(),
        &format!("{}/v1/completions", srv.url()),
        &completion_body(10, 20),
    )
    .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.token_times.len(), 3);
    assert!(!s.done(), "no [DONE] on a cut stream");
    assert!(s.error.is_some(), "the client sees a broken body");
}

#[tokio::test]
async fn hang_fraction_never_answers_but_health_still_does() {
    let srv = start(cfg(FaultSpec {
        hang_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let c = client();
    let r = tokio::time::timeout(
        Duration::from_millis(800),
        c.post(format!("{}/v1/completions", srv.url()))
            .json(&completion_body(10, 2))
            .send(),
    )
    .await;
    assert!(r.is_err(), "the request must hang");
    assert_eq!(
        c.get(format!("{}/health", srv.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unhealthy_for_refuses_health_then_recovers() {
    let srv = start(cfg(FaultSpec {
        unhealthy_for: Some(0.6),
        ..Default::default()
    }))
    .await;
    let c = client();
    let t0 = Instant::now();
    assert_eq!(
        c.get(format!("{}/health", srv.url()))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let mut ready = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if c.get(format!("{}/health", srv.url()))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("healthy after the slow start");
    assert!(
        ready >= Duration::from_millis(450),
        "healthy too early: {ready:?}"
    );
    assert!(stream(
        &c,
        &format!("{}/v1/completions", srv.url()),
        &completion_body(10, 2)
    )
    .await
    .done());
}

#[tokio::test]
async fn hang_after_wedges_every_route() {
    let srv = start(cfg(FaultSpec {
        hang_after: Some(0.3),
        ..Default::default()
    }))
    .await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/health", srv.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = tokio::time::timeout(
        Duration::from_millis(700),
        c.get(format!("{}/health", srv.url())).send(),
    )
    .await;
    assert!(r.is_err(), "a wedged server does not answer /health");
}

#[tokio::test]
async fn crash_after_requests_cuts_streams_and_ends_the_server() {
    let srv = start(cfg(FaultSpec {
        crash_after_requests: Some(2),
        ..Default::default()
    }))
    .await;
    let c = client();
    let u = format!("{}/v1/completions", srv.url());
    let long = tokio::spawn({
        let (c, u) = (c.clone(), u.clone());
        async move { stream(&c, &u, completion_body(10, 2000)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        stream(&c, &u, &completion_body(10, 2)).await.done(),
        "request 2 is served"
    );
    let third = stream(&c, &u, &completion_body(10, 2)).await;
    assert!(!third.done(), "request 3 meets the crash");
    let long = long.await.unwrap();
    assert!(
        !long.done() && long.error.is_some(),
        "in-flight stream is cut by the crash"
    );
    let exit = tokio::time::timeout(Duration::from_secs(5), srv.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ServeExit::Crashed(_)), "{exit:?}");
}

/// The binary under test.
fn vbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vbench"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_healthy(port: u16, child: &mut std::process::Child) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn binary_serves_with_launcher_flags_and_exits_cleanly_on_sigterm() {
    let port = free_port();
    let mut child = vbench()
        .args([
            "sim-serve",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--role",
            "decode",
            "--profile",
            "tiny-cpu",
            "--model",
            "Qwen/Qwen3-0.6B",
            "--tp",
            "2",
            "--kv-connector",
            "nixl",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_healthy(port, &mut child), "never became healthy");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = crate::support::exit_within(
        &mut child,
        Duration::from_secs(10),
        "did not exit on SIGTERM",
    );
    assert!(status.success(), "{status:?}");
}

#[test]
fn binary_crash_after_seconds_exits_with_status_1() {
    let port = free_port();
    let mut child = vbench()
        .args([
            "sim-serve",
            "--port",
            &port.to_string(),
            "--profile",
            "tiny-cpu",
            "--crash-after",
            "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_healthy(port, &mut child));
    let status = crate::support::exit_within(&mut child, Duration::from_secs(10), "did not crash");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn binary_rejects_bad_flags_with_exit_code_2() {
    let out = vbench()
        .args(["sim-serve", "--profile", "no-such"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("llama3-8b-h200"));
    let out = vbench()
        .args(["sim-serve", "--fail-fraction", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn binary_startup_delay_refuses_connections_until_it_listens() {
    let port = free_port();
    let t0 = Instant::now();
    let mut child = vbench()
        .args([
            "sim-serve",
            "--port",
            &port.to_string(),
            "--profile",
            "tiny-cpu",
            "--startup-delay",
            "0.7",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens yet"
    );
    assert!(wait_healthy(port, &mut child));
    assert!(t0.elapsed() >= Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn binary_serves_a_user_profile_file() {
    let port = free_port();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sim/user-profile.toml"
    );
    let mut child = vbench()
        .args([
            "sim-serve",
            "--port",
            &port.to_string(),
            "--profile",
            path,
            "--model",
            "mine",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_healthy(port, &mut child), "never became healthy");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(
        buf.contains("\"id\":\"mine\"") && buf.contains("\"max_model_len\":4096"),
        "{buf}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

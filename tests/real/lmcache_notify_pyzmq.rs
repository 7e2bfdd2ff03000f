//! LMCache's KV-ready notification against the real ZeroMQ and msgspec that LMCache uses
//! (pyzmq and msgspec from the vLLM CPU build's environment): vbench's receiver reads what a
//! pyzmq PUSH socket sends, and a pyzmq PULL socket decodes what vbench's sender sends.

use std::process::Stdio;

use tokio::net::TcpListener;

use crate::apply_vllm_cpu::vllm_root;

/// LMCache 0.5.6's message types, as its PD backend declares them.
const PD_MESSAGES: &str = r#"
import msgspec, sys, zmq
from typing import Union
class PDMsgBase(msgspec.Struct, tag=True): pass
class ProxyNotif(PDMsgBase):
    req_id: str
class CancelNotif(PDMsgBase):
    req_id: str
    keys: list[str]
PDMsg = Union[ProxyNotif, CancelNotif]
ctx = zmq.Context()
"#;

fn python() -> Option<std::path::PathBuf> {
    Some(vllm_root()?.join("venv/bin/python"))
}

#[tokio::test]
async fn a_pyzmq_push_socket_reaches_vbenchs_receiver() {
    let Some(python) = python() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ids = Vec::new();
        vbench::kv_notify::receive(stream, |id| ids.push(id))
            .await
            .unwrap();
        ids
    });
    // As LMCache's sender does: PUSH, connect to the proxy, send msgpack-encoded messages.
    let script = format!(
        "{PD_MESSAGES}
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, 5000)
s.connect('tcp://127.0.0.1:{port}')
for m in [ProxyNotif(req_id='vbench-1-0'), CancelNotif(req_id='x', keys=['k']), ProxyNotif(req_id='r' * 300)]:
    s.send(msgspec.msgpack.encode(m))
s.close()
ctx.term()
"
    );
    // Async: the receiver runs on this thread while Python waits for its handshake.
    let out = tokio::process::Command::new(&python)
        .args(["-c", &script])
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ids = tokio::time::timeout(std::time::Duration::from_secs(20), received)
        .await
        .expect("the PUSH peer closed its connection")
        .unwrap();
    assert_eq!(
        ids,
        [Some("vbench-1-0".to_owned()), None, Some("r".repeat(300))],
        "two ProxyNotifs in order; the CancelNotif is not one"
    );
}

#[tokio::test]
async fn a_pyzmq_pull_socket_decodes_vbenchs_notification() {
    let Some(python) = python() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // As LMCache's proxy does: PULL, bind, decode as the tagged union.
    let script = format!(
        "{PD_MESSAGES}
s = ctx.socket(zmq.PULL)
s.bind('tcp://127.0.0.1:{port}')
print('bound', flush=True)
if s.poll(20000) == 0: sys.exit('nothing received')
m = msgspec.msgpack.decode(s.recv(), type=PDMsg)
assert isinstance(m, ProxyNotif), m
print(m.req_id, flush=True)
"
    );
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "bound");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    vbench::kv_notify::push(addr, "vbench-42-7").await.unwrap();
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success());
    assert_eq!(rest.trim(), "vbench-42-7");
}

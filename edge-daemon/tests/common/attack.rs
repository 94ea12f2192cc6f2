//! Helpers the attack tests share: connections from chosen loopback addresses (each one
//! another client to the node), a node started under a low open-files limit, and the
//! node's memory and descriptors.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use super::Edge;

/// A TCP connection from `from` (any 127.x.y.z) to `to`.
pub async fn connect_from(
    from: Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from.into(), 0))?;
    s.connect(to).await
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A process's soft open-files limit.
pub fn soft_nofile(pid: u32) -> usize {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Sets this test process's soft open-files limit (children inherit it; the hard limit
/// stays, so it can be raised again). Only while holding `super::SPAWN`.
pub(super) fn set_soft_nofile(n: usize) {
    let ok = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .arg(format!("--nofile={n}:"))
        .status()
        .expect("prlimit (util-linux)")
        .success();
    assert!(ok, "prlimit failed");
}

impl Edge {
    /// Starts the node with a soft open-files limit of `nofile`, as on a default Linux
    /// box (`prlimit` on this process around the spawn; `unsafe` pre_exec is forbidden
    /// in this workspace).
    pub fn start_nofile(dir: &Path, extra: &[&str], nofile: usize) -> Edge {
        let edge = Self::try_start_with(dir, extra, &[], Some(nofile))
            .unwrap_or_else(|log| panic!("node did not start:\n{log}"));
        assert_eq!(soft_nofile(edge.child.id()), nofile);
        edge
    }

    /// The plain HTTP listener's address.
    pub fn http_socket(&self) -> SocketAddr {
        self.http.trim_start_matches("http://").parse().unwrap()
    }
}

/// An MQTT 3.1.1 CONNECT (clean session, keepalive 60) with a username and password.
pub fn connect_packet(client: &str, user: &str, pass: &str) -> Vec<u8> {
    let s = |v: &str| {
        let mut out = (v.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(v.as_bytes());
        out
    };
    let mut body = s("MQTT");
    body.extend_from_slice(&[4, 0xC2, 0, 60]);
    body.extend(s(client));
    body.extend(s(user));
    body.extend(s(pass));
    let mut out = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// A TCP connection from `source` (a loopback address such as "127.0.7.1").
pub async fn tcp_from(source: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{source}:0").parse().unwrap())?;
    sock.connect(to).await
}

/// Connects from `source` as `user` and returns the CONNACK return code (None: closed,
/// or no answer within 30 s).
pub async fn try_connect(source: &str, to: SocketAddr, user: &str, pass: &str) -> Option<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tcp_from(source, to).await.ok()?;
    s.write_all(&connect_packet(user, user, pass)).await.ok()?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_exact(&mut ack))
        .await
        .ok()?
        .ok()?;
    Some(ack[3])
}

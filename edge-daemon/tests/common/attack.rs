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

//! Where the bench's three admins run: by default in a process and session of their own
//! (this bench binary started again with `GARASI_BENCH_PROBE_CHILD`), as an admin's
//! browser runs on another machine; with `GARASI_BENCH_PROBES=inproc`, as threads of this
//! process, in the session of the K depots (the rig of runs before 2026-12-01's last
//! ones), where a probe's thread waits behind the depots' threads for its CPU share.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::probe::probe;

const CHILD: &str = "GARASI_BENCH_PROBE_CHILD";
/// What the probe process prints before its protocol lines, so that nothing else it
/// might print is read as one.
const TAG: &str = "probe-process:";
/// Longest wait for the probe process to answer (it asks a cloud that may be stuck).
const ANSWER_WITHIN: Duration = Duration::from_secs(180);

/// Each probe's answer times (ms) and how many answers were not up to date.
pub type Results = Vec<(Vec<f64>, usize)>;

/// True when the admins are threads of the bench's own process.
pub fn in_process() -> bool {
    std::env::var("GARASI_BENCH_PROBES").is_ok_and(|v| v == "inproc")
}

/// Probes that have made their first (uncounted) request and wait for `go`.
pub enum Probes {
    Threads {
        stop: CancellationToken,
        go: Vec<mpsc::Sender<()>>,
        running: Vec<std::thread::JoinHandle<(Vec<f64>, usize)>>,
    },
    Process {
        child: Child,
        to: ChildStdin,
        /// The process's protocol lines, read on a thread of their own.
        from: mpsc::Receiver<String>,
    },
}

/// Starts one probe per URL list, each on its own thread and runtime.
fn threads(ca_pem: &str, lists: Vec<Vec<String>>) -> Probes {
    let stop = CancellationToken::new();
    let (ready, readied) = mpsc::channel();
    let (mut go, mut running) = (Vec::new(), Vec::new());
    let n = lists.len();
    for urls in lists {
        let (tx, rx) = mpsc::channel();
        go.push(tx);
        running.push(probe(
            ca_pem.to_string(),
            urls,
            stop.clone(),
            ready.clone(),
            rx,
        ));
    }
    // Only the probes hold senders now: one that fails before it is ready ends the wait.
    drop(ready);
    for _ in 0..n {
        readied
            .recv()
            .expect("a probe failed before its first answer (see its panic above)");
    }
    Probes::Threads { stop, go, running }
}

impl Probes {
    /// The probes, ready: their connections are open and their first answers taken.
    pub fn start(ca_pem: &str, lists: Vec<Vec<String>>) -> Probes {
        if in_process() {
            return threads(ca_pem, lists);
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut to = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Some(line) = line.strip_prefix(TAG) {
                    if tx.send(line.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let order = serde_json::json!({ "ca_pem": ca_pem, "lists": lists });
        writeln!(to, "{order}").unwrap();
        let mut probes = Probes::Process { child, to, from };
        let ready = probes.answer("ready");
        assert_eq!(ready, "ready in its own session", "the probe process");
        probes
    }

    /// The probe process's next protocol line; panics, saying how the process ended, if
    /// it does not come.
    fn answer(&mut self, what: &str) -> String {
        let Probes::Process { child, from, .. } = self else {
            unreachable!("only the probe process answers")
        };
        match from.recv_timeout(ANSWER_WITHIN) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no {what} from the probe process ({e}): {:?}", child.wait());
            }
        }
    }

    /// Sends the probe process one protocol line.
    fn tell(&mut self, line: &str) {
        let Probes::Process { to, child, .. } = self else {
            unreachable!("only the probe process is told")
        };
        if let Err(e) = writeln!(to, "{line}") {
            panic!("the probe process is gone ({e}): {:?}", child.try_wait());
        }
    }

    /// Counting starts now.
    pub fn go(&mut self) {
        match self {
            Probes::Threads { go, .. } => go.iter().for_each(|g| g.send(()).unwrap()),
            Probes::Process { .. } => self.tell("go"),
        }
    }

    /// Stops the probes and returns what each measured.
    pub fn finish(self) -> Results {
        match self {
            Probes::Threads { stop, running, .. } => {
                stop.cancel();
                running.into_iter().map(|r| r.join().unwrap()).collect()
            }
            Probes::Process { .. } => {
                let mut me = self;
                me.tell("stop");
                let line = me.answer("results");
                if let Probes::Process { mut child, .. } = me {
                    assert!(child.wait().unwrap().success(), "the probe process failed");
                }
                serde_json::from_str(&line).unwrap()
            }
        }
    }
}

/// In the probe process: runs the probes as told on standard input, answers on
/// standard output. Returns false in the bench's own process.
pub fn child_main() -> bool {
    if std::env::var_os(CHILD).is_none() {
        return false;
    }
    #[cfg(target_os = "linux")]
    if !garasi_fleet_tests::own_session() {
        return true;
    }
    // Said, not assumed: the JSON's "probes" field rests on it.
    #[cfg(target_os = "linux")]
    let own = rustix::process::getsid(None).ok() == Some(rustix::process::getpid());
    #[cfg(not(target_os = "linux"))]
    let own = false;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut next = || lines.next().unwrap().unwrap();
    let order: serde_json::Value = serde_json::from_str(&next()).unwrap();
    let ca_pem = order["ca_pem"].as_str().unwrap();
    let lists: Vec<Vec<String>> = serde_json::from_value(order["lists"].clone()).unwrap();
    let Probes::Threads { stop, go, running } = threads(ca_pem, lists) else {
        unreachable!("threads() starts threads")
    };
    let session = if own {
        "in its own session"
    } else {
        "sharing a session"
    };
    println!("{TAG}ready {session}");
    assert_eq!(next(), "go");
    go.iter().for_each(|g| g.send(()).unwrap());
    assert_eq!(next(), "stop");
    stop.cancel();
    let results: Results = running.into_iter().map(|r| r.join().unwrap()).collect();
    println!("{TAG}{}", serde_json::to_string(&results).unwrap());
    true
}

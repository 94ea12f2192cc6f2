//! Peak-memory measurement for attack-input tests: the input is handed to a child run of
//! the same test binary (a fresh peak RSS), which reports VmHWM before and after.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// Peak resident set of this process, in KiB (VmHWM).
pub fn hwm_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// In the child: the input file named by `env`, or None when not run as a child.
pub fn child_input(env: &str) -> Option<Vec<u8>> {
    let path = std::env::var(env).ok()?;
    Some(std::fs::read(path).unwrap())
}

/// In the child: prints the verdict and the peak RSS around `f`.
pub fn child_report(f: impl FnOnce() -> bool) {
    let before = hwm_kib();
    let refused = f();
    let after = hwm_kib();
    println!("CHILD refused={refused} hwm_before_kib={before} hwm_after_kib={after}");
}

/// Runs the test `child` of this binary with `input` in a file named by `env`; returns
/// (whether the child refused the input, peak RSS growth in MiB).
pub fn in_child(child: &str, env: &str, input: &[u8]) -> (bool, usize) {
    let dir = std::env::temp_dir().join(format!("garasi-{child}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.bin");
    std::fs::write(&path, input).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(env, &path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find_map(|l| l.find("CHILD").map(|i| l[i..].to_string()))
        .expect(&text);
    let num = |k: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .parse()
            .unwrap()
    };
    let grown_mib = (num("hwm_after_kib=") - num("hwm_before_kib=")) >> 10;
    (line.contains("refused=true"), grown_mib)
}

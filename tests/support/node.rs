//! Test peers that run on Node.js (`tests/oidc`, `tests/pds`): their `node_modules`
//! installed with `npm ci` from the committed lock file on first use, and a server
//! script run as a child process that prints one `READY <payload>` line on stdout once
//! it listens and exits when its stdin closes. Included with `#[path]` by the test
//! binaries that use it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The folder of a test peer under `tests/`.
pub fn peer_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Checks `node`, and installs `dir/node_modules` with `npm ci` unless `installed` (a
/// path under `node_modules` that only a finished install has) exists. Once per folder
/// and test binary: concurrent callers wait for the first, and a failed install fails
/// every caller with the same message. `purpose` says what needs it, for that message.
pub fn ensure_node_modules(dir: &Path, installed: &str, purpose: &str) {
    static INSTALLS: Mutex<Option<HashMap<PathBuf, Result<(), String>>>> = Mutex::new(None);
    let mut installs = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = installs
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_insert_with(|| install(dir, installed, purpose))
        .clone();
    drop(installs);
    if let Err(message) = outcome {
        panic!("{message}");
    }
}

fn install(dir: &Path, installed: &str, purpose: &str) -> Result<(), String> {
    version_of("node").map_err(|e| {
        format!(
            "{purpose} needs Node.js (>= 20), but `node` could not be run: {e}. \
             Install Node.js and npm."
        )
    })?;
    if dir.join("node_modules").join(installed).exists() {
        return Ok(());
    }
    version_of("npm").map_err(|e| {
        format!(
            "{}/node_modules is missing and `npm` could not be run to install it: {e}. \
             Install npm (it comes with Node.js), or run `npm ci` in {}.",
            dir.display(),
            dir.display()
        )
    })?;
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`npm ci` in {} could not start: {e}", dir.display()))?;
    if !out.status.success() || !dir.join("node_modules").join(installed).exists() {
        return Err(format!(
            "`npm ci` in {} failed ({}), or left no {installed}:\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn version_of(program: &str) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{program} --version` exited with {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running server script. Dropping it closes its stdin (the script exits), kills it
/// to be sure, and prints its stderr if the test is failing.
pub struct NodeServer {
    name: String,
    /// What followed `READY ` on its one line of stdout.
    pub ready: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<String>>,
}

impl NodeServer {
    /// Runs `node script args…` in `dir` and waits up to `within` for its READY line.
    pub fn start(dir: &Path, script: &str, args: &[&str], within: Duration) -> NodeServer {
        let name = format!("{}/{script}", dir.display());
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("`node {name}` could not start: {e}"));
        let stdin = child.stdin.take();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let label = name.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // The contract is one line; anything more would be a server bug worth seeing.
            for line in lines.map_while(Result::ok) {
                eprintln!("{label} stdout (unexpected): {line}");
            }
        });
        let mut server = NodeServer {
            name,
            ready: String::new(),
            child,
            stdin,
            log,
        };
        match rx.recv_timeout(within) {
            Ok(line) => {
                let payload = line.strip_prefix("READY ").unwrap_or_else(|| {
                    panic!("expected `READY …` from {}, got {line:?}", server.name)
                });
                server.ready = payload.trim().to_owned();
            }
            Err(e) => panic!(
                "{} did not print READY within {within:?} ({e}); stderr:\n{}",
                server.name,
                server.log()
            ),
        }
        server
    }

    /// What the script wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} ({}) log ----\n{}",
                self.name,
                self.ready,
                self.log()
            );
        }
    }
}

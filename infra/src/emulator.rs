//! Starts moto's server on a free loopback port (through infra/emulator.py in
//! the project's pinned venv) and stops it when dropped or when this process
//! dies (the script exits when its standard input closes). Under `make test`
//! the emulator is a fork of a warmed-up one (`MEDREC_EMULATOR_FORKS`), which
//! serves until its connection closes.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Emulator {
    /// Kept until drop: the emulator lives as long as this does.
    process: Process,
    pub endpoint: String,
}

enum Process {
    Child(Child),
    Forked { _connection: UnixStream },
}

/// The repository root (where template.yaml lives).
pub fn repo_root() -> PathBuf {
    if let Ok(dir) = std::env::var("MEDREC_ROOT") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MEDREC_PYTHON") {
        return PathBuf::from(p);
    }
    repo_root().join(".venv/bin/python")
}

/// The port an emulator reports on its first line ("PORT <n>").
fn reported_port(from: impl Read) -> Result<u16, String> {
    let mut line = String::new();
    BufReader::new(from).read_line(&mut line).map_err(|e| e.to_string())?;
    line.trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or(format!("emulator did not start (said {line:?})"))
}

impl Emulator {
    /// A fresh emulator on a free port: forked from the warmed-up one when
    /// `make test` serves forks, else a new process.
    pub fn start() -> Result<Emulator, String> {
        if let Some(forks) = std::env::var_os("MEDREC_EMULATOR_FORKS") {
            let stream = UnixStream::connect(&forks).map_err(|e| format!("emulator forks at {forks:?}: {e}"))?;
            let port = reported_port(&stream)?;
            return Ok(Emulator {
                process: Process::Forked { _connection: stream },
                endpoint: format!("http://127.0.0.1:{port}"),
            });
        }
        Self::spawn()
    }

    fn spawn() -> Result<Emulator, String> {
        let py = python();
        if !py.exists() {
            return Err(format!("{} not found: run `make setup` (or `make dev` / `make test`) first", py.display()));
        }
        let mut child = Command::new(&py)
            .arg(repo_root().join("infra/emulator.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let stdout = child.stdout.take().ok_or("no emulator stdout")?;
        let port = reported_port(stdout).inspect_err(|_| {
            let _ = child.kill();
        })?;
        Ok(Emulator { process: Process::Child(child), endpoint: format!("http://127.0.0.1:{port}") })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // A forked emulator exits when its connection closes, with the stream.
        if let Process::Child(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! Starts moto's server on a free loopback port (through infra/emulator.py in
//! the project's pinned venv) and stops it when dropped or when this process
//! dies (the script exits when its standard input closes).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Emulator {
    child: Child,
    pub endpoint: String,
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

impl Emulator {
    pub fn start(port: u16) -> Result<Emulator, String> {
        let py = python();
        if !py.exists() {
            return Err(format!("{} not found: run `make setup` (or `make dev` / `make test`) first", py.display()));
        }
        let mut child = Command::new(&py)
            .arg(repo_root().join("infra/emulator.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let stdout = child.stdout.take().ok_or("no emulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let port: u16 = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).ok_or_else(|| {
            let _ = child.kill();
            format!("emulator did not start (said {line:?})")
        })?;
        Ok(Emulator { child, endpoint: format!("http://127.0.0.1:{port}") })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

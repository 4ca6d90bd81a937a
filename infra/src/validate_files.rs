//! `medrec validate FILE...|DIR`: the server's validator over files, with a
//! progress bar for large directories, a summary, and exit code 1 on errors.

use medrec_edge::fhir::validator::model;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() || p.extension().is_some_and(|e| e == "json") {
                collect(&p, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

pub fn run(paths: &[PathBuf], verbose: bool) -> Result<ExitCode, String> {
    let mut files = vec![];
    for p in paths {
        collect(p, &mut files)?;
    }
    let bar = if files.len() > 50 {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files ({per_sec})").map_err(|e| e.to_string())?,
    );
    let started = Instant::now();
    let (mut valid, mut invalid, mut unreadable) = (0u64, 0u64, 0u64);
    for f in &files {
        bar.inc(1);
        let parsed = std::fs::read(f).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(resource) = parsed else {
            unreadable += 1;
            bar.suspend(|| println!("{}: not readable JSON", f.display()));
            continue;
        };
        let issues: Vec<_> = model().validate(&resource).into_iter().filter(|i| i.is_error()).collect();
        if issues.is_empty() {
            valid += 1;
            continue;
        }
        invalid += 1;
        let first = &issues[0];
        bar.suspend(|| {
            let at = first.expression.as_deref().unwrap_or("-");
            println!("{}: {} issue(s), first at {at}: {}", f.display(), issues.len(), first.diagnostics);
            if verbose {
                for i in &issues[1..] {
                    println!("    {}: {}", i.expression.as_deref().unwrap_or("-"), i.diagnostics);
                }
            }
        });
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let total = valid + invalid + unreadable;
    println!(
        "{total} files: {valid} valid, {invalid} invalid, {unreadable} unreadable ({:.0} files/s)",
        total as f64 / secs.max(1e-9)
    );
    Ok(if invalid + unreadable == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

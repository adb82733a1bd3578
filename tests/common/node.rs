//! Runs the playwright-core scripts of tests/browser/ with node and headless Chromium.
//!
//! Needs `node`, Chromium (`/usr/bin/chromium` or `$CHROMIUM`) and tests/browser/node_modules:
//! `scripts/test.sh` installs them. Without them the tests that use this fail; they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// Panics, naming what is missing and how to get it, unless node, Chromium and playwright-core
/// are all there.
fn require_browser_tools() {
    let mut missing = Vec::new();
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("`node` on PATH".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!("Chromium at {}", chromium().display()));
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules/playwright-core".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser tests need {}: run scripts/test.sh, which installs them",
        missing.join(", ")
    );
}

/// Runs `node tests/browser/<script> args…` off the test's thread (whose servers keep serving)
/// and returns the JSON line it prints last.
pub async fn run_script(script: &'static str, args: Vec<String>) -> Value {
    require_browser_tools();
    let out = actix_rt::task::spawn_blocking(move || {
        Command::new("node")
            .arg(format!("tests/browser/{script}"))
            .args(&args)
            .current_dir(ROOT)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

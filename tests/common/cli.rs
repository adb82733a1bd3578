//! The `tessera` command, run as a test's operator would: `--config FILE` and the arguments,
//! with optional standard input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `tessera --config config args…` to its end, with `stdin` on its standard input.
pub fn run(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// [`run`] on the blocking pool, so that a server in the test's own process keeps answering
/// (its admin API, for one) meanwhile.
pub async fn run_beside(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_owned);
    actix_rt::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&config, &args, stdin.as_deref())
    })
    .await
    .unwrap()
}

/// The standard output of a command that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

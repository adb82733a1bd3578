//! A throwaway PostgreSQL for tests (this crate's and the integration tests'): `initdb` in a
//! temporary directory, a server on a free loopback port, a fresh database per
//! [`TestPostgres::database`], all stopped and removed on drop. As root, the server runs as
//! the `postgres` user (PostgreSQL refuses to run as root).
//!
//! The binaries are found on `PATH` or under `/usr/lib/postgresql/<version>/bin` (Debian's
//! `postgresql` package). Without them this panics with what to install: a test that needs
//! PostgreSQL must not pass without one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    next: AtomicUsize,
}

fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path
        .into_iter()
        .chain(debian)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .expect("PostgreSQL's initdb and pg_ctl are needed (apt-get install postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when this process is root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPostgres {
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tessera-pg-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            );
        }
        let data = dir.join("data");
        let mut init = command(&bin.join("initdb"));
        init.arg("-D")
            .arg(&data)
            .args(["-U", "tessera", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(init, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c max_connections=50 \
             -c shared_buffers=16MB",
            dir.display()
        );
        let mut start = command(&bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
        TestPostgres {
            dir,
            bin,
            port,
            next: AtomicUsize::new(0),
        }
    }

    /// The URL of the server's `postgres` database, as the superuser.
    pub fn admin_url(&self) -> String {
        format!("postgres://tessera@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        let name = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        let admin = super::Io::start(&self.admin_url()).unwrap();
        let create = format!("CREATE DATABASE {name}");
        admin
            .run(move |client| async move {
                client.batch_execute(&create).await?;
                Ok(())
            })
            .unwrap();
        format!("postgres://tessera@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let mut stop = command(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

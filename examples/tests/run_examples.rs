//! Every example runs to completion: exit 0, no server needed.
//!
//! `cargo test` builds the examples of this package before running its tests; this test
//! finds each binary next to its own and runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example_names() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

fn binary(name: &str) -> PathBuf {
    // .../target/<profile>/deps/run_examples-<hash> -> .../target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn every_example_runs_to_completion() {
    let names = example_names();
    assert!(!names.is_empty(), "no example found");
    for name in names {
        let path = binary(&name);
        assert!(
            path.exists(),
            "example `{name}` was not built at {}",
            path.display()
        );
        let data =
            std::env::temp_dir().join(format!("eventsource-example-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        let started = Instant::now();
        let mut child = Command::new(&path)
            .current_dir(&data)
            .env_remove("EVENTSOURCE_QUICKSTART_POSTGRES")
            .env_remove("EVENTSOURCE_QUICKSTART_DB")
            // Files, not pipes: a chatty example must not block on a full pipe.
            .stdout(std::fs::File::create(data.join("stdout")).unwrap())
            .stderr(std::fs::File::create(data.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("example `{name}` did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read_to_string(data.join("stdout")).unwrap_or_default();
        let stderr = std::fs::read_to_string(data.join("stderr")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&data);
        assert!(
            status.success(),
            "example `{name}` exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(!stdout.is_empty(), "example `{name}` printed nothing");
    }
}

/// `--postgres URL`: the same quick start against PostgreSQL, continuing on a second run.
#[cfg(feature = "postgres")]
#[test]
fn the_quickstart_runs_on_postgres_and_continues_where_it_stopped() {
    let url = eventsource_test::backend::postgres_url();
    let connect = || async {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
    };
    let reachable = eventsource_test::block_on(async { connect().await.map(|_| ()) });
    if eventsource_test::backend::require_or_skip("postgres", &url, reachable).is_none() {
        return;
    }
    let schema = format!("quickstart_test_{}", std::process::id());
    let run = || {
        let output = Command::new(binary("quickstart"))
            .args(["--postgres", &url, "--schema", &schema])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "quickstart failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let first = run();
    let second = run();
    eventsource_test::block_on(async {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&connect().await.unwrap())
            .await
            .unwrap();
    });
    assert!(first.contains("(PostgreSQL)"), "{first}");
    // PostgreSQL positions follow transaction ids: far apart, so read them back.
    let reached = |output: &str| -> u64 {
        let (_, rest) = output.split_once(" new events, now at ").expect(output);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect(output)
    };
    assert!(
        first.contains("checkpoint was at 0, read 3 new events, now at "),
        "{first}"
    );
    assert!(second.contains("It already holds 3 events"), "{second}");
    let resumed = format!("checkpoint was at {}, read 4 new events", reached(&first));
    assert!(second.contains(&resumed), "{second}");
    assert!(reached(&second) > reached(&first), "{second}");
    assert!(second.contains("shipped"), "{second}");
}

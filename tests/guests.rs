//! The guest examples of every language, built by `guest-examples/build.sh`
//! (scripts/test.sh runs it first), served by the catshost binary and asked
//! over HTTP/1.1 and h2c; `catshost check` and `catshost compile` on them.

mod support;

use std::time::Duration;

use http::{StatusCode, Version};
use serde_json::{Value, json};
use support::{Client, Process, built, catshost, temp_file};

const BOTH: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];

async fn request(
    process: &Process,
    version: Version,
    method: &str,
    path: &str,
    body: &[u8],
) -> support::Answer {
    Client::connect(process.addr, version)
        .await
        .request(method, path, body)
        .await
}

async fn hello(language: &str, greeting: &str) {
    let server = Process::serve(&[built(language, "hello").to_str().unwrap()]);
    for version in BOTH {
        let answer = request(&server, version, "GET", "/", b"").await;
        assert_eq!(answer.status, StatusCode::OK, "{language} {version:?}");
        assert_eq!(answer.version, version);
        assert_eq!(
            answer.body,
            format!("hello from {greeting}\n"),
            "{language} {version:?}"
        );
    }
}

/// The JSON API every language's `sum` example implements.
async fn sum(language: &str, failure: &str) {
    let server = Process::serve(&[built(language, "sum").to_str().unwrap()]);
    for version in BOTH {
        let answer = request(&server, version, "POST", "/sum", b"[1, 2, 3.5]").await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{language} {version:?}: {}",
            answer.body
        );
        assert_eq!(answer.headers["content-type"], "application/json");
        let value: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(value["count"], json!(3), "{language}: {value}");
        assert_eq!(value["sum"].as_f64(), Some(6.5), "{language}: {value}");

        let many: Vec<u32> = (1..=1000).collect();
        let body = serde_json::to_vec(&many).unwrap();
        let answer = request(&server, version, "POST", "/sum", &body).await;
        let value: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(value["count"], json!(1000), "{language}: {value}");
        assert_eq!(
            value["sum"].as_f64(),
            Some(500_500.0),
            "{language}: {value}"
        );

        for bad in [
            &b"nope"[..],
            b"[1, \"2\"]",
            b"{\"a\": 1}",
            b"[true]",
            b"[NaN]",
            b"[-Infinity]",
            b"[1e999]",
            b"[1e308, 1e308]",
            b"[-0x10]",
        ] {
            let answer = request(&server, version, "POST", "/sum", bad).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{language}: {bad:?}"
            );
            let value: Value = serde_json::from_str(&answer.body).unwrap();
            assert!(value["error"].is_string(), "{language}: {value}");
        }

        let usage = request(&server, version, "GET", "/", b"").await;
        assert_eq!(usage.status, StatusCode::OK, "{language}");
    }

    // The runtime's error reaches the client as a 500, and its text reaches
    // the log with the request's id.
    let boom = request(&server, Version::HTTP_11, "GET", "/boom", b"").await;
    assert_eq!(
        boom.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{language}: {}",
        boom.body
    );
    let access = server
        .wait_for_line(Duration::from_secs(10), |l| {
            l.contains("catshost::access") && l.contains("path=\"/boom\"")
        })
        .unwrap_or_else(|| panic!("{language}: no access line for /boom"));
    let id = access
        .split("request_id=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    let line = server.wait_for_line(Duration::from_secs(10), |l| {
        !l.contains("catshost::access")
            && l.contains(failure)
            && l.contains(&format!("request_id={id} "))
    });
    assert!(
        line.is_some(),
        "{language}: no log line with `{failure}` for request {id}:\n{}",
        server.stderr().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wat_examples() {
    hello("wat", "wat").await;
    let server = Process::serve(&[built("wat", "upper").to_str().unwrap()]);
    let big: Vec<u8> = b"streamed in upper case. ".repeat(50_000);
    for version in BOTH {
        let answer = request(&server, version, "POST", "/", b"Hello, World!").await;
        assert_eq!(answer.body, "HELLO, WORLD!");
        let answer = request(&server, version, "POST", "/", &big).await;
        assert_eq!(answer.body.len(), big.len());
        assert_eq!(
            answer.body,
            String::from_utf8(big.to_ascii_uppercase()).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_examples() {
    hello("c", "c").await;
    sum("c", "boom: the handler aborts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_examples() {
    hello("rust", "rust").await;
    sum("rust", "boom: a panic the handler does not catch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_examples() {
    hello("python", "python").await;
    sum(
        "python",
        "RuntimeError: boom: an exception the handler does not catch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_examples() {
    hello("js", "javascript").await;
    sum("js", "boom: an error the handler does not catch").await;
}

#[test]
fn check_reports_the_world_and_what_each_import_gets() {
    let output = catshost()
        .args(["check", built("python", "hello").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "world: wasi:http/proxy (WASI 0.2), exporting wasi:http/incoming-handler@0.2."
        ),
        "{stdout}"
    );
    assert!(stdout.contains("all provided"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("wasi:cli/environment@0.2.")
                && l.ends_with("provided: only --env (or the tenant's env) variables")),
        "{stdout}"
    );
    assert!(stdout.ends_with("catshost can serve it\n"), "{stdout}");

    // A WebSocket handler: its host interface is provided.
    let output = catshost()
        .args(["check", built("rust", "chat").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("websockets: served by catshost:websocket/handler@0.1.0")
            && stdout.contains("all provided")
            && stdout.lines().any(|l| l
                .trim_start()
                .starts_with("catshost:websocket/sockets@0.1.0")
                && l.ends_with("provided: the instance's own WebSockets, and its tenant's rooms")),
        "{stdout}"
    );

    // A component that imports what catshost does not have, and exports no
    // handler.
    let foreign = temp_file(
        "foreign.wat",
        br#"(component (import "acme:db/query@1.0.0" (instance)))"#,
    );
    let output = catshost()
        .args(["check", foreign.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("world: none catshost serves"), "{stdout}");
    assert!(
        stdout.contains("acme:db/query@1.0.0  MISSING: not provided by catshost"),
        "{stdout}"
    );
    assert!(stdout.ends_with("catshost cannot serve it\n"), "{stdout}");
}

#[test]
fn a_compiled_component_serves_only_when_allowed_and_a_foreign_one_is_refused() {
    let cwasm = temp_file("hello.cwasm", b"");
    let output = catshost()
        .args([
            "compile",
            built("c", "hello").to_str().unwrap(),
            "-o",
            cwasm.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Native code is refused unless the operator allows it, whatever the
    // file is called.
    let renamed = temp_file("shop.wasm", &std::fs::read(&cwasm).unwrap());
    for path in [&cwasm, &renamed] {
        let output = catshost()
            .args(["serve", "--addr", "127.0.0.1:0", "--no-cache"])
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("is precompiled native code")
                && stderr.contains("--unsafe-allow-precompiled"),
            "{stderr}"
        );
    }
    let server = Process::serve(&[
        "--no-cache",
        "--unsafe-allow-precompiled",
        cwasm.to_str().unwrap(),
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(request(&server, Version::HTTP_11, "GET", "/", b""));
    assert_eq!(answer.body, "hello from c\n");

    // Precompiled bytes that do not load here are refused with the fix.
    let mut broken = std::fs::read(&cwasm).unwrap();
    let len = broken.len();
    broken.truncate(len / 2);
    let broken = temp_file("broken.cwasm", &broken);
    let output = catshost()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--unsafe-allow-precompiled",
        ])
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("compile it again with `catshost compile`"),
        "{stderr}"
    );
}

#[test]
fn a_tenant_serves_a_compiled_component_only_when_its_entry_allows_it() {
    let cwasm = temp_file("tenant-hello.cwasm", b"");
    let output = catshost()
        .args(["compile", built("c", "hello").to_str().unwrap(), "-o"])
        .arg(&cwasm)
        .output()
        .unwrap();
    assert!(output.status.success());
    let shop = temp_file("tenant-shop.wasm", &std::fs::read(&cwasm).unwrap());
    let config = |allow: &str| {
        temp_file(
            "precompiled.toml",
            format!(
                "[server]\naddr = \"127.0.0.1:0\"\n[[tenant]]\nname = \"shop\"\n\
                 component = \"{}\"\nroutes = [\"/\"]\npreload = true\n{allow}",
                shop.display()
            )
            .as_bytes(),
        )
    };
    let output = catshost()
        .args(["serve", "--no-cache", "--config"])
        .arg(config(""))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tenant 'shop': the component cannot be served")
            && stderr.contains("is precompiled native code")
            && stderr.contains("unsafe_allow_precompiled = true"),
        "{stderr}"
    );

    let config = config("unsafe_allow_precompiled = true\n");
    let server = Process::serve_with(&["--no-cache", "--config", config.to_str().unwrap()], false);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(request(&server, Version::HTTP_11, "GET", "/", b""));
    assert_eq!(answer.body, "hello from c\n");
}

#[test]
fn the_second_start_loads_the_component_from_the_compile_cache() {
    let cache = temp_file("cache-probe", b"").with_file_name("compile-cache");
    let component = built("js", "hello");
    let start = || {
        let mut server = Process::serve(&[
            "--cache-dir",
            cache.to_str().unwrap(),
            component.to_str().unwrap(),
        ]);
        server.signal(libc::SIGTERM);
        assert!(server.wait_exit(Duration::from_secs(30)).unwrap().success());
        server.stderr()
    };
    let first = start();
    assert!(
        first.iter().any(|l| l.contains("component compiled")),
        "{first:#?}"
    );
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 1, "one cache entry expected");
    let second = start();
    assert!(
        second
            .iter()
            .any(|l| l.contains("component loaded from the compile cache")),
        "{second:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_reach_only_the_environment_and_directories_they_are_given() {
    let component = built("python", "files");
    let dir = temp_file("hello.txt", b"from the host\n");
    let dir = dir.parent().unwrap().to_str().unwrap().to_string();

    // Nothing by default: no variables (not even the host's), no files.
    let server = Process::serve(&[component.to_str().unwrap()]);
    let home = request(&server, Version::HTTP_11, "GET", "/env/HOME", b"").await;
    assert_eq!(home.status, StatusCode::NOT_FOUND, "{}", home.body);
    let file = request(&server, Version::HTTP_11, "GET", "/file/hello.txt", b"").await;
    assert_ne!(file.status, StatusCode::OK, "{}", file.body);
    drop(server);

    // --env and a read-only --dir.
    let mount = format!("{dir}::/data");
    let server = Process::serve(&[
        "--env",
        "GREETING=hi there",
        "--dir",
        &mount,
        component.to_str().unwrap(),
    ]);
    let greeting = request(&server, Version::HTTP_2, "GET", "/env/GREETING", b"").await;
    assert_eq!(
        (greeting.status, greeting.body.as_str()),
        (StatusCode::OK, "hi there\n")
    );
    let home = request(&server, Version::HTTP_11, "GET", "/env/HOME", b"").await;
    assert_eq!(home.status, StatusCode::NOT_FOUND);
    let file = request(&server, Version::HTTP_11, "GET", "/file/hello.txt", b"").await;
    assert_eq!(
        (file.status, file.body.as_str()),
        (StatusCode::OK, "from the host\n")
    );
    let write = request(
        &server,
        Version::HTTP_11,
        "PUT",
        "/file/new.txt",
        b"guest data",
    )
    .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.body);
    assert!(!std::path::Path::new(&dir).join("new.txt").exists());
    drop(server);

    // --dir-rw lets it write.
    let server = Process::serve(&["--dir-rw", &mount, component.to_str().unwrap()]);
    let write = request(
        &server,
        Version::HTTP_11,
        "PUT",
        "/file/new.txt",
        b"guest data",
    )
    .await;
    assert_eq!(write.status, StatusCode::CREATED, "{}", write.body);
    assert_eq!(
        std::fs::read(std::path::Path::new(&dir).join("new.txt")).unwrap(),
        b"guest data"
    );
}

#[test]
fn bad_env_and_dir_flags_are_refused() {
    for (flag, value, message) in [
        ("--env", "NOVALUE", "is not KEY=VALUE"),
        ("--env", "=x", "is not KEY=VALUE"),
        ("--dir", "/no/such/dir::/data", "is not a directory"),
    ] {
        let output = catshost().args(["serve", flag, value]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preopen_stays_the_directory_it_was_when_the_server_started() {
    let component = built("python", "files");
    let base = temp_file("preopen-marker", b"").with_file_name("preopen-swap");
    let _ = std::fs::remove_dir_all(&base);
    let (served, secret) = (base.join("served"), base.join("secret"));
    std::fs::create_dir_all(&served).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(served.join("a.txt"), b"served\n").unwrap();
    std::fs::write(secret.join("a.txt"), b"secret\n").unwrap();
    let mount = format!("{}::/data", served.display());
    let server = Process::serve(&["--dir", &mount, component.to_str().unwrap()]);
    let first = request(&server, Version::HTTP_11, "GET", "/file/a.txt", b"").await;
    assert_eq!(first.body, "served\n");

    // Someone swaps the path for a symlink to another directory. Before the
    // directory was opened once, the next request read the secret.
    std::fs::rename(&served, base.join("moved")).unwrap();
    std::os::unix::fs::symlink(&secret, &served).unwrap();
    let after = request(&server, Version::HTTP_11, "GET", "/file/a.txt", b"").await;
    assert_eq!(after.body, "served\n");

    // A symlink is refused as a preopen at start.
    let output = catshost()
        .args(["serve", "--dir", &mount, component.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
}

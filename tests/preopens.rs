//! A guest's preopens never reach catshost's own files: a writable one that
//! holds the compile cache, the config file, a component, a certificate or
//! a key, or a read-only one that holds another tenant's key, is refused at
//! start and at reload, with both paths named (docs/limits.md). Each
//! preopen here is reached through a symlink, so only the canonical paths
//! tell that it holds the file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use serde_json::Value;
use support::{Process, catshost, fixture, get_host, json_lines, temp_file};

/// A folder for a test's files, `base`, holding `site/` (what catshost
/// reads) and `link`, a symlink to `base` itself: `base/link/site` is
/// `base/site` reached through a symlink.
fn layout() -> (PathBuf, PathBuf) {
    let base = temp_file("marker", b"").with_file_name("preopens");
    // Left by an earlier process of the same id, in a kept target folder.
    let _ = std::fs::remove_dir_all(&base);
    let site = base.join("site");
    std::fs::create_dir_all(site.join("keys")).unwrap();
    std::os::unix::fs::symlink(".", base.join("link")).unwrap();
    std::fs::write(site.join("hello.wasm"), fixture("hello")).unwrap();
    (base, site)
}

/// Writes a certificate for `name` and its key to `dir/NAME.pem` and
/// `dir/NAME.key`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let (pem, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&pem, cert.pem()).unwrap();
    std::fs::write(&key, signing_key.serialize_pem()).unwrap();
    (pem, key)
}

/// Runs `catshost serve ARGS`, which must fail before it serves, and
/// returns its stderr. A catshost that serves instead (or is still running
/// after 60 s) is stopped and the test fails.
fn refused(args: &[&str]) -> String {
    let log = temp_file("stderr.log", b"");
    let mut child = catshost()
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let stderr = std::fs::read_to_string(&log).unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stderr.contains("catshost: serving") || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("catshost was not refused: {args:?}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_writable_dir_holding_the_cache_a_component_or_a_certificate_refuses_the_start() {
    let (base, site) = layout();
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let component = s(&site.join("hello.wasm"));
    let (cert, key) = certificate(&site.join("keys"), "localhost");
    let (cert, key) = (s(&cert), s(&key));
    // The cache does not exist yet: it is checked at its nearest folder.
    let cache = s(&site.join("cache"));
    let (through, keys) = (s(&base.join("link/site")), s(&base.join("link/site/keys")));
    let (to_site, to_keys) = (format!("{through}::/data"), format!("{keys}::/keys"));
    let any_port = ["--addr", "127.0.0.1:0"];
    for (args, dir, which, holds) in [
        (
            vec!["--cache-dir", &cache, "--dir-rw", &to_site, &component],
            &through,
            s(&site),
            format!("the compile cache '{cache}'"),
        ),
        (
            vec!["--no-cache", "--dir-rw", &to_site, &component],
            &through,
            s(&site),
            format!("the component '{component}'"),
        ),
        (
            vec![
                "--no-cache",
                "--dir-rw",
                &to_keys,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
            &keys,
            s(&site.join("keys")),
            format!("the certificate '{cert}'"),
        ),
    ] {
        let stderr = refused(&[&args[..], &any_port].concat());
        let want = format!(
            "catshost: error: the writable directory '{dir}' (which is '{which}') contains {holds}"
        );
        assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
        assert!(
            !Path::new(&cache).exists(),
            "the check comes before the compile cache"
        );
    }

    // Read-only, the same folder is the guest's to read.
    let to_site = format!("{through}::/data");
    drop(Process::serve(&[
        "--cache-dir",
        &cache,
        "--dir",
        &to_site,
        &component,
    ]));
}

#[test]
fn a_config_whose_tenant_could_write_catshosts_files_or_read_anothers_key_refuses_the_start() {
    let (base, site) = layout();
    certificate(&site.join("keys"), "a.test");
    let config = site.join("catshost.toml");
    let server = "[server]\naddr = \"127.0.0.1:0\"\n";
    let tenant = |name: &str, extra: &str| {
        format!(
            "[[tenant]]\nname = \"{name}\"\ncomponent = \"hello.wasm\"\nroutes = [\"{name}.test\"]\n{extra}\n"
        )
    };
    let a_tls = "tls = { cert = \"keys/a.test.pem\", key = \"keys/a.test.key\" }";
    let through = site.join("../link/site");
    let cache = base.join("cache-home/catshost");
    std::fs::create_dir_all(base.join("cache-home")).unwrap();
    let (config_s, cache_s) = (config.to_str().unwrap(), cache.to_str().unwrap());
    for (text, want) in [
        (
            tenant("a", "dirs_rw = [\"../link/site\"]"),
            format!(
                "tenant 'a': the writable directory '{}' (which is '{}') contains the config file '{}'",
                through.display(),
                site.display(),
                config.display()
            ),
        ),
        (
            tenant("a", "dirs_rw = [\"../link/cache-home\"]"),
            format!("contains the compile cache '{cache_s}'"),
        ),
        (
            format!(
                "{}{}",
                tenant("a", a_tls),
                tenant("b", "dirs = [\"../link/site/keys\"]")
            ),
            format!(
                "tenant 'b': the read-only directory '{}' (which is '{}') contains tenant 'a''s \
                 private key '{}'",
                site.join("../link/site/keys").display(),
                site.join("keys").display(),
                site.join("keys/a.test.key").display()
            ),
        ),
    ] {
        std::fs::write(&config, format!("{server}{text}")).unwrap();
        let stderr = refused(&["--config", config_s, "--cache-dir", cache_s]);
        assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
        assert!(!cache.exists(), "the check comes before the compile cache");
    }

    // A tenant may read its own key.
    let own = tenant("a", &format!("{a_tls}\ndirs = [\"../link/site/keys\"]"));
    std::fs::write(&config, format!("{server}{own}")).unwrap();
    let args = ["--config", config_s, "--cache-dir", cache_s];
    drop(Process::serve_with(&args, false));
}

/// The first log line after the first `after` whose message is one of
/// `messages`; panics after 60 s.
async fn first_of(server: &Process, messages: &[&str], after: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = json_lines(server);
        let found = lines
            .iter()
            .skip(after)
            .find(|l| messages.iter().any(|m| l["message"].as_str() == Some(m)));
        if let Some(line) = found {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "none of {messages:?} in {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_let_a_tenant_write_its_config_is_refused_and_the_old_one_serves() {
    let (_base, site) = layout();
    let config_of = |route: &str, extra: &str| {
        format!(
            "[server]\naddr = \"127.0.0.1:0\"\n\n[[tenant]]\nname = \"site\"\ncomponent = \"hello.wasm\"\nroutes = [\"{route}\"]\n{extra}\n"
        )
    };
    let config = site.join("catshost.toml");
    std::fs::write(&config, config_of("old.test", "")).unwrap();
    let mut command: Command = catshost();
    command
        .args(["--log-format", "json", "serve", "--no-cache", "--config"])
        .arg(&config);
    let server = Process::spawn(command);

    std::fs::write(
        &config,
        config_of("new.test", "dirs_rw = [\"../link/site\"]"),
    )
    .unwrap();
    let seen = json_lines(&server).len();
    server.signal(libc::SIGHUP);
    let failed = "config reload failed: the previous config keeps serving";
    let line = first_of(&server, &[failed, "config reloaded"], seen).await;
    assert_eq!(line["message"], failed, "{line}");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "tenant 'site': the writable directory '{}' (which is '{}') contains the config file '{}'",
            site.join("../link/site").display(),
            site.display(),
            config.display()
        )),
        "{error}"
    );
    let old = get_host(server.addr, Version::HTTP_11, "old.test", "/").await;
    assert_eq!(old.status, StatusCode::OK);
    let new = get_host(server.addr, Version::HTTP_11, "new.test", "/").await;
    assert_eq!(new.status, StatusCode::NOT_FOUND);
}

//! The container and Kubernetes recipe (docs/deploy.md): the Dockerfile
//! builds the way the README says, the manifests validate and agree with
//! catshost's flags, and the component they ship serves.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use http::{StatusCode, Version};
use support::{Process, get, temp_file};

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dockerfile_builds_with_the_readme_build_command() {
    let dockerfile = repo_file("Dockerfile");
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("RUN "))
        .filter(|command| command.starts_with("cargo "))
        .collect();
    assert_eq!(builds.len(), 1, "one cargo step expected: {builds:?}");
    let readme = repo_file("README.md");
    assert!(
        readme.lines().map(str::trim).any(|l| l == builds[0]
            || l.strip_prefix(builds[0])
                .is_some_and(|rest| rest.trim_start().starts_with('#'))),
        "the README does not show the Dockerfile's build command `{}`",
        builds[0]
    );
    // What the build makes is what the image copies and runs.
    assert!(dockerfile.contains("COPY --from=build /src/target/release/catshost "));
    assert!(
        dockerfile.contains("USER nonroot"),
        "the image runs as root"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_validate_and_their_config_serves() {
    let dir = temp_file("catshost.toml", b"");
    let dir = dir.parent().unwrap();
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/check.py");
    // scripts/test.sh installs kubernetes-validate in this venv.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-toolchains/deploy-check/bin/python3");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let output = Command::new(python)
        .arg(&check)
        .arg("--extract")
        .arg(dir)
        .output()
        .expect("python3 runs (scripts/test.sh installs what deploy/check.py needs)");
    assert!(
        output.status.success(),
        "deploy/check.py failed (scripts/test.sh installs kubernetes-validate):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The config binds 0.0.0.0:8080; serve it on a socket bound here.
    let (_listener, fd, _) = support::inherited_listener();
    let mut command = support::catshost();
    command
        .args(["serve", "--listen-fd", &fd, "--config"])
        .arg(dir.join("catshost.toml"));
    let server = Process::spawn(command);
    let answer = get(server.addr, Version::HTTP_11, "/from-k8s").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("path: /from-k8s"), "{}", answer.body);
}

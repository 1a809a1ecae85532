//! The admin listener's bounds: whoever reaches `--admin-addr` holds at most
//! its connection cap of the process's descriptors, within the server's
//! per-client cap, each connection under the server's header read, idle and
//! write timeouts.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::{StatusCode, Version};
use support::{Client, Process, Raw, TestServer, catshost, fixture, get};

/// Serves the admin endpoints of `server` on 127.0.0.1:0, at most `max`
/// connections at once, for the rest of the test.
async fn admin(server: &TestServer, max: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(catshost::admin::serve(listener, server.server.clone(), max));
    addr
}

/// Waits until `server` has closed `n` connections for `reason` (a client
/// sees the close before the server counts it); panics after 10 s.
async fn wait_for_closed(server: &TestServer, reason: &str, n: u64) {
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        while server.closed(reason) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "{} connections closed for {reason}, not {n}",
        server.closed(reason)
    );
}

/// A keep-alive client of `addr` whose first request was answered: it
/// holds a connection slot.
async fn answered(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr, Version::HTTP_11).await;
    let answer = client.request("GET", "/healthz", b"").await;
    assert_eq!(answer.status, StatusCode::OK);
    client
}

/// GETs `path` from `addr` on new connections until one is answered (a
/// slot the server gives back comes back once it sees the close); panics
/// after 10 s.
async fn answered_once_free(addr: SocketAddr, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut raw = Raw::send(addr, head.as_bytes()).await;
            if raw.read_to_end().await.is_ok_and(|t| t.contains(" 200 OK")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(answered.is_ok(), "{addr}{path} was not answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_that_pipeline_and_never_read_are_cut_at_the_write_timeout() {
    use catshost_bench::abuse::pipelining_not_reading;

    let write = Duration::from_secs(1);
    let mut builder = catshost::Server::builder();
    builder.write_timeout(write);
    let server = TestServer::start(&fixture("hello"), &builder).await;
    let admin = admin(&server, 64).await;
    // Without a write timeout on the admin listener all 20 were still open
    // when the clients gave up.
    let give_up = Duration::from_secs(15);
    let closed = pipelining_not_reading(admin, 20, "/metrics", give_up)
        .await
        .unwrap();
    for time in closed {
        let time = time.expect("an admin connection is still open");
        assert!(
            time >= write,
            "closed after {time:?}, before the write timeout"
        );
    }
    wait_for_closed(&server, "not_reading", 20).await;
    assert_eq!(
        get(admin, Version::HTTP_11, "/healthz").await.status,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_past_the_cap_are_closed_as_they_are_accepted() {
    let server = TestServer::fixture("hello").await;
    let admin = admin(&server, 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(answered(admin).await);
    }
    // Accepted after the three: over the cap.
    let mut over = Raw::connect(admin).await;
    assert!(over.closed_within(Duration::from_secs(5)).await);
    assert_eq!(server.closed("admin_limit"), 1);
    // The server's own listener is not the admin one's cap.
    assert_eq!(
        get(server.addr, Version::HTTP_11, "/").await.status,
        StatusCode::OK
    );
    drop(held.pop());
    answered_once_free(admin, "/healthz").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_count_against_the_servers_per_client_cap() {
    let mut builder = catshost::Server::builder();
    builder.max_connections_per_client(2);
    let server = TestServer::start(&fixture("hello"), &builder).await;
    let admin = admin(&server, 64).await;
    let held = vec![answered(admin).await, answered(admin).await];
    // The client has its two: the server's listener closes its third, and
    // so does the admin one.
    let mut main = Raw::connect(server.addr).await;
    assert!(main.closed_within(Duration::from_secs(5)).await);
    let mut third = Raw::connect(admin).await;
    assert!(third.closed_within(Duration::from_secs(5)).await);
    assert_eq!(server.closed("per_client_limit"), 2);
    drop(held);
    answered_once_free(server.addr, "/").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_admin_connections_are_cut_at_the_servers_timeouts() {
    use catshost_bench::abuse::{Silent, silent, until_closed};

    let mut builder = catshost::Server::builder();
    builder
        .header_read_timeout(Duration::from_secs(2))
        .idle_timeout(Duration::from_secs(1));
    let server = TestServer::start(&fixture("hello"), &builder).await;
    let admin = admin(&server, 64).await;
    // The admin listener's own header read timeout was 10 s, and it had no
    // idle timeout.
    let give_up = Duration::from_secs(6);
    let request = b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n";
    let (silent, idle) = tokio::join!(
        silent(admin, Silent::OneByte, 3, give_up),
        until_closed(admin, request, give_up),
    );
    for closed in silent.unwrap() {
        assert!(closed.is_some(), "a silent admin connection is still open");
    }
    assert!(
        idle.unwrap().is_some(),
        "an idle admin connection is still open"
    );
    // The idle one by the watchdog, before hyper's header read timeout.
    wait_for_closed(&server, "idle", 1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catshost_serve_caps_its_admin_listener_at_admin_max_connections() {
    let server = Process::serve(&[
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-max-connections",
        "1",
    ]);
    let admin = server.admin_addr();
    let _held = answered(admin).await;
    let mut over = Raw::connect(admin).await;
    assert!(over.closed_within(Duration::from_secs(5)).await);
    // Without an admin listener the flag means nothing: refused.
    let output = catshost()
        .args(["serve", "--admin-max-connections", "2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-addr"), "{stderr}");
}

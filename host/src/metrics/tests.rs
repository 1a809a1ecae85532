use super::*;

#[test]
fn every_metric_is_in_the_exposition_with_its_labels() {
    let metrics = Metrics::new();
    let tenant: Arc<str> = "shop".into();
    metrics.request_done(&tenant, 200, "HTTP/1.1", Duration::from_millis(3));
    metrics.instance_created(&tenant, Duration::from_micros(20));
    metrics.count(&tenant, Counted::GuestFault("timeout"));
    metrics.count(&tenant, Counted::Rejected("concurrency"));
    metrics.tls_handshake_failed("timeout");
    let gauge = metrics.in_flight_gauge(&tenant);
    gauge.inc();
    let _conn = metrics.connection_opened();

    let text = metrics.encode();
    for line in [
        r#"catshost_requests_total{tenant="shop",status="200",protocol="HTTP/1.1"} 1"#,
        r#"catshost_request_duration_seconds_count{tenant="shop",protocol="HTTP/1.1"} 1"#,
        r#"catshost_requests_in_flight{tenant="shop"} 1"#,
        "catshost_connections_open 1",
        r#"catshost_instance_creation_seconds_count{tenant="shop"} 1"#,
        r#"catshost_guest_faults_total{tenant="shop",kind="timeout"} 1"#,
        r#"catshost_admission_rejections_total{tenant="shop",reason="concurrency"} 1"#,
        r#"catshost_tls_handshake_failures_total{reason="timeout"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("# TYPE catshost_request_duration_seconds histogram"));
}

#[test]
fn statuses_and_close_codes_clients_and_guests_choose_make_a_bounded_set_of_series() {
    let metrics = Metrics::new();
    let tenant: Arc<str> = "shop".into();
    // Every status a guest can answer with, and 10,000 close codes.
    for status in 100..=999 {
        metrics.request_done(&tenant, status, "HTTP/1.1", Duration::from_millis(1));
    }
    for code in 0..10_000 {
        metrics.websocket_closed(&tenant, code);
    }
    let text = metrics.encode();
    let series = |name: &str| text.lines().filter(|l| l.starts_with(name)).count();
    // The registered statuses (about 60) and six buckets.
    let statuses = series("catshost_requests_total{");
    assert!(
        (60..=80).contains(&statuses),
        "{statuses} status series:\n{text}"
    );
    // 1000-1015 and three buckets.
    assert_eq!(series("catshost_websocket_closes_total{"), 16 + 3, "{text}");
    for line in [
        r#"catshost_requests_total{tenant="shop",status="200",protocol="HTTP/1.1"} 1"#,
        r#"catshost_requests_total{tenant="shop",status="418",protocol="HTTP/1.1"} 1"#,
        r#"catshost_requests_total{tenant="shop",status="other",protocol="HTTP/1.1"} 400"#,
        r#"catshost_websocket_closes_total{tenant="shop",code="1001"} 1"#,
        r#"catshost_websocket_closes_total{tenant="shop",code="4xxx"} 1000"#,
        r#"catshost_websocket_closes_total{tenant="shop",code="other"} 7984"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

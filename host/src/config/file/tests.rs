use super::*;

/// The example of ../shared/DESIGN.md, word for word.
const DESIGN_EXAMPLE: &str = r#"[server]
addr = "127.0.0.1:8080"
http = "both"                 # both | http1 | h2 (ALPN over TLS; h2c by prior knowledge in cleartext)
shutdown_timeout = "30s"
tls = { cert = "certs/default.pem", key = "certs/default.key" }   # optional default certificate

[defaults]                    # every tenant inherits these unless it sets its own
request_timeout = "30s"
max_memory = "128MiB"
max_concurrent_requests = 100
max_body_size = "10MiB"

[[tenant]]
name = "shop"
component = "shop.wasm"       # relative to this file
routes = ["shop.example.com", "*.shop.example.com", "example.com/shop"]  # HOST, HOST/PREFIX, or /PREFIX (any host)
env = { MODE = "prod" }
outbound = ["https://api.example.net", "http://127.0.0.1:9000"]          # deny everything else
max_concurrent_requests = 20
tls = { cert = "certs/shop.pem", key = "certs/shop.key" }                # chosen by SNI

[[tenant]]
name = "blog"
component = "blog.wasm"
routes = ["blog.example.com", "/blog"]
"#;

/// A folder with the files the example names (their contents do not
/// matter to the checks).
fn folder() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("catshost-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::create_dir_all(dir.join("static")).unwrap();
    for file in [
        "shop.wasm",
        "blog.wasm",
        "certs/default.pem",
        "certs/default.key",
        "certs/shop.pem",
        "certs/shop.key",
    ] {
        std::fs::write(dir.join(file), "").unwrap();
    }
    dir
}

fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    FileConfig::parse(&folder().join("catshost.toml"), text)
}

#[test]
fn the_design_example_is_valid() {
    let config = parse(DESIGN_EXAMPLE).unwrap();
    assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
    assert!(
        config
            .tls
            .as_ref()
            .unwrap()
            .cert
            .ends_with("certs/default.pem")
    );
    let [shop, blog] = &config.tenants[..] else {
        panic!("two tenants")
    };
    assert_eq!(shop.name, "shop");
    assert!(shop.component.ends_with("shop.wasm"));
    assert_eq!(shop.component_at.line, 15);
    let routes: Vec<String> = shop.routes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        routes,
        ["shop.example.com", "*.shop.example.com", "example.com/shop"]
    );
    assert_eq!(shop.access.env, [("MODE".to_string(), "prod".to_string())]);
    assert!(!shop.access.outbound.is_empty());
    // Its own limit, and the defaults for the rest.
    assert_eq!(shop.limits.max_concurrent_requests, 20);
    assert_eq!(blog.limits.max_concurrent_requests, 100);
    assert_eq!(blog.limits.max_body_size, 10 << 20);
    assert_eq!(blog.limits.instance.max_memory, 128 << 20);
    assert!(shop.tls.is_some() && blog.tls.is_none());
    assert!(blog.access.outbound.is_empty());
}

#[test]
fn mistakes_are_reported_at_their_line_and_column() {
    let tenant = "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n";
    let cases: &[(String, &str, &str)] = &[
        (
            "[server]\nadr = \"x\"\n".into(),
            "2:1",
            "unknown field `adr`",
        ),
        ("[server]\naddr = 8080\n".into(), "2:8", "invalid type"),
        (
            "[server]\naddr = \"localhost\"\n".into(),
            "2:8",
            "expected IP:PORT",
        ),
        (
            "[server]\nshutdown_timeout = \"30\"\n".into(),
            "2:20",
            "invalid duration",
        ),
        (
            "[server]\nhttp = \"h3\"\n".into(),
            "2:8",
            "unknown HTTP version",
        ),
        ("[server]\nmax_connections = 0\n".into(), "2:19", "nonzero"),
        (
            "[server]\ntrusted_proxies = \"10.0.0.0/8\"\n".into(),
            "2:19",
            "an array",
        ),
        (
            "[server]\ntrusted_proxies = [\"10/8\"]\n".into(),
            "2:19",
            "is not a network",
        ),
        (
            "[server]\nhttp2_max_frame_size = \"1KiB\"\n".into(),
            "2:24",
            "out of range",
        ),
        (
            "[defaults]\nmax_memory = \"1 TB\"\n".into(),
            "2:14",
            "invalid size",
        ),
        (
            "[defaults]\nmax_body_size = -1\n".into(),
            "2:17",
            "negative",
        ),
        ("[server\n".into(), "1:8", ""),
        (
            format!("{tenant}colour = \"red\"\n"),
            "5:1",
            "unknown field `colour`",
        ),
        (
            format!("{tenant}env = {{ A = 1 }}\n"),
            "5:13",
            "invalid type",
        ),
        (
            "[[tenant]]\nname = \"a\"\ncomponent = \"missing.wasm\"\nroutes = [\"/a\"]\n".into(),
            "3:13",
            "is not a file",
        ),
        (
            "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\n".into(),
            "2:8",
            "no routes",
        ),
        (
            "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\", \"a.*.com\"]\n"
                .into(),
            "4:17",
            "wildcard",
        ),
        (
            format!(
                "{tenant}[[tenant]]\nname = \"b\"\ncomponent = \"blog.wasm\"\nroutes = [\"/b\", \"/a/\"]\n"
            ),
            "8:17",
            "the route '/a' is also tenant 'a''s (at ",
        ),
        (
            format!(
                "{tenant}[[tenant]]\nname = \"a\"\ncomponent = \"blog.wasm\"\nroutes = [\"/b\"]\n"
            ),
            "6:8",
            "already defined at",
        ),
        (
            format!("{tenant}outbound = [\"ftp://x.org\"]\n"),
            "5:13",
            "http:// or https://",
        ),
        (
            format!("{tenant}dirs = [\"nowhere::/data\"]\n"),
            "5:9",
            "is not a directory",
        ),
        (
            format!("{tenant}tls = {{ cert = \"certs/shop.pem\", key = \"certs/shop.key\" }}\n"),
            "5:7",
            "no route of a whole host",
        ),
        (
            "[[tenant]]\nname = \"-\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n".into(),
            "2:8",
            "cannot name a tenant",
        ),
        ("[server]\n".into(), "2:1", "no [[tenant]]"),
        (
            "[defaults]\nmax_memory = \"5GiB\"\n".into(),
            "2:14",
            "at most 4GiB",
        ),
        (
            "[defaults]\nrequest_timeout = \"10000000000000000000s\"\n".into(),
            "2:19",
            "at most a year",
        ),
        (
            "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"a.test/x\"]\n\
             tls = { cert = \"certs/shop.pem\", key = \"certs/shop.key\" }\n"
                .into(),
            "5:7",
            "no route of a whole host",
        ),
    ];
    for (text, at, message) in cases {
        let error = parse(text).unwrap_err();
        let location = error
            .location()
            .unwrap_or_else(|| panic!("{text}: {error}"));
        assert_eq!(
            format!("{}:{}", location.line, location.column),
            *at,
            "{text}\n{error}"
        );
        assert!(error.to_string().contains(message), "{text}\n{error}");
        assert!(error.to_string().contains("catshost.toml:"), "{error}");
    }
}

/// A tenant and `[defaults]` take every limit of `LIMIT_SETTINGS`, and
/// `[server]` every setting of `SERVER_SETTINGS`, by its key.
#[test]
fn every_setting_of_the_tables_is_a_key_of_the_file() {
    let limits: String = LIMIT_SETTINGS
        .iter()
        .map(|s| {
            format!(
                "{} = {}\n",
                s.key,
                s.show(&TenantLimits::default())
                    .map_or("1".into(), |v| format!("\"{v}\""))
            )
        })
        .collect();
    let server: String = SERVER_SETTINGS
        .iter()
        .filter_map(|s| {
            Some(format!(
                "{} = \"{}\"\n",
                s.key,
                s.show(&ServerSettings::default())?
            ))
        })
        .collect();
    let text = format!(
        "[server]\n{server}[defaults]\n{limits}[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n{limits}"
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.server, ServerSettings::default());
    // The settings whose default shows nothing were written as 1.
    let mut limits = TenantLimits::default();
    limits.instance.reuse.max_instance_reuse_count = Some(1);
    limits.instance.reuse.max_instance_concurrent_reuse_count = Some(1);
    limits.max_requests_per_second = Some(1);
    assert_eq!(config.tenants[0].limits, limits);
}

#[test]
fn trusted_proxies_are_an_array_of_networks() {
    let tenant = "[[tenant]]\nname = \"a\"\ncomponent = \"shop.wasm\"\nroutes = [\"/a\"]\n";
    let text = format!("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n{tenant}");
    let proxies = parse(&text).unwrap().server.trusted_proxies;
    assert_eq!(proxies.to_string(), "10.0.0.0/8, ::1/128");
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let error = FileConfig::load(Path::new("/nonexistent/catshost.toml")).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/catshost.toml"));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(512))]

    /// Any text: a config or an error that points into the text; never
    /// a panic.
    #[test]
    fn any_text_is_checked_without_panicking(text in "\\PC{0,200}") {
        check_no_panic(&text);
    }

    /// The example with a stretch of it replaced: near misses of a
    /// valid file, where the interesting mistakes are.
    #[test]
    fn mangled_examples_are_checked_without_panicking(
        start in 0..DESIGN_EXAMPLE.len(),
        len in 0usize..40,
        with in "[\\[\\]=\"{},.a-z0-9*/ \n#-]{0,12}",
    ) {
        let mut text = DESIGN_EXAMPLE.to_string();
        let start = (0..=start).rev().find(|&i| text.is_char_boundary(i)).unwrap();
        let end = (start + len).min(text.len());
        let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
        text.replace_range(start..end, &with);
        check_no_panic(&text);
    }
}

fn check_no_panic(text: &str) {
    match parse(text) {
        Ok(config) => assert!(!config.tenants.is_empty()),
        Err(error) => {
            let location = error.location().expect("a parse error has a location");
            assert!(location.line >= 1 && location.line <= text.lines().count() + 1);
            assert!(location.column >= 1);
        }
    }
}

//! The rule of `check_preopens`, on real files in a folder of each test's
//! own (a bind mount, which takes privileges, on device and inode numbers
//! given by hand).

use std::os::unix::fs::symlink;

use super::reach::{Index, Opened, Reach, identity};
use super::*;

/// A fresh folder of the test's own.
fn folder() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("catshost-preopen-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mkdir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn touch(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "").unwrap();
    path
}

fn dir(host: &Path, writable: bool) -> Preopen {
    Preopen {
        host: host.into(),
        guest: "/data".into(),
        writable,
    }
}

fn file(path: &Path, role: Role) -> HostFile {
    HostFile {
        path: path.into(),
        role,
    }
}

fn key(path: &Path, owner: Option<&str>) -> HostFile {
    file(
        path,
        Role::Key {
            owner: owner.map(String::from),
        },
    )
}

/// `check_preopens` for one tenant's one preopen.
fn check(tenant: Option<&str>, preopen: Preopen, files: &[HostFile]) -> Result<(), String> {
    let dirs = [preopen];
    check_preopens(
        &[Grant {
            tenant,
            dirs: &dirs,
        }],
        files,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_writable_preopen_that_holds_a_host_file_is_refused_naming_both_paths() {
    let base = folder();
    let data = mkdir(base.join("data"));
    let files = [
        file(&touch(base.join("catshost.toml")), Role::ConfigFile),
        file(&mkdir(base.join("cache")), Role::CompileCache),
        file(&touch(base.join("apps/shop.wasm")), Role::Component),
        file(&touch(base.join("certs/shop.pem")), Role::Certificate),
        key(&touch(base.join("certs/shop.key")), Some("shop")),
    ];
    for host_file in &files {
        let path = &host_file.path;
        // The preopen is the folder of the file, or one above it.
        for above in [path.parent().unwrap(), &base] {
            let error = check(
                Some("shop"),
                dir(above, true),
                std::slice::from_ref(host_file),
            )
            .expect_err(&format!("{} in {}", path.display(), above.display()));
            assert!(
                error.starts_with(&format!(
                    "tenant 'shop': the writable directory '{}' contains {} '{}'",
                    above.display(),
                    host_file.role,
                    path.display()
                )),
                "{error}"
            );
        }
        // Read-only, or beside it: nothing to refuse.
        check(
            Some("shop"),
            dir(path.parent().unwrap(), false),
            std::slice::from_ref(host_file),
        )
        .unwrap();
        check(
            Some("shop"),
            dir(&data, true),
            std::slice::from_ref(host_file),
        )
        .unwrap();
    }
    // The compile cache itself, and the one folder holding everything.
    let cache = &files[1].path;
    check(None, dir(cache, true), &files).unwrap_err();
    check(None, dir(Path::new("/"), true), &files).unwrap_err();
    // A folder inside the cache holds no entry of it.
    check(None, dir(&mkdir(cache.join("tmp")), true), &files).unwrap();
    // Every grant is checked, and the first preopen that reaches a file
    // is the one reported.
    let (safe, open) = ([dir(&data, true)], [dir(&data, true), dir(&base, true)]);
    let grants = [
        Grant {
            tenant: Some("a"),
            dirs: &safe,
        },
        Grant {
            tenant: Some("b"),
            dirs: &open,
        },
    ];
    let error = check_preopens(&grants, &files).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "tenant 'b': the writable directory '{}' contains the config file",
            base.display()
        )),
        "{error}"
    );
}

#[test]
fn a_preopen_reached_through_a_symlink_is_compared_by_where_it_leads() {
    let base = folder();
    let real = mkdir(base.join("real"));
    let config = touch(real.join("conf/catshost.toml"));
    symlink(&real, base.join("via")).unwrap();
    let through = base.join("via/conf");
    let error = check(
        Some("shop"),
        dir(&through, true),
        &[file(&config, Role::ConfigFile)],
    )
    .unwrap_err();
    assert!(
        error.starts_with(&format!(
            "tenant 'shop': the writable directory '{}' (which is '{}') contains the config \
             file '{}': its guests could rewrite the config",
            through.display(),
            real.join("conf").display(),
            config.display()
        )),
        "{error}"
    );
    // And the file named through a symlink, the preopen by its own path.
    let named = base.join("via/conf/catshost.toml");
    let error = check(
        None,
        dir(&real.join("conf"), true),
        &[file(&named, Role::ConfigFile)],
    )
    .unwrap_err();
    assert!(
        error.contains(&format!(
            "'{}' (which is '{}')",
            named.display(),
            config.display()
        )),
        "{error}"
    );
}

#[test]
fn a_writable_preopen_that_holds_a_symlink_on_the_way_to_a_host_file_is_refused() {
    // ~/.cache is a symlink to a cache elsewhere: the cache is not in
    // ~, but a guest writing in ~ could point ~/.cache at its own.
    let base = folder();
    let home = mkdir(base.join("home"));
    mkdir(base.join("elsewhere/cache/catshost"));
    symlink("../elsewhere/cache", home.join(".cache")).unwrap();
    let cache = file(&home.join(".cache/catshost"), Role::CompileCache);
    let error = check(None, dir(&home, true), std::slice::from_ref(&cache)).unwrap_err();
    assert!(
        error.contains(&format!(
            "(which is '{}')",
            base.join("elsewhere/cache/catshost").display()
        )),
        "{error}"
    );
    // Read-only, the symlink gives away nothing: the guest cannot follow
    // it out of its preopen.
    let key_path = touch(base.join("elsewhere/cache/b.key"));
    let linked = home.join(".cache/b.key");
    assert_eq!(Reach::of(&linked).end, key_path);
    check(Some("a"), dir(&home, false), &[key(&linked, Some("b"))]).unwrap();
    check(Some("a"), dir(&home, true), &[key(&linked, Some("b"))]).unwrap_err();
}

#[test]
fn a_host_file_that_does_not_exist_yet_is_checked_at_its_nearest_folder() {
    let base = folder();
    let home = mkdir(base.join("home"));
    let cache = file(&home.join("not-yet/.cache/catshost"), Role::CompileCache);
    let error = check(None, dir(&home, true), std::slice::from_ref(&cache)).unwrap_err();
    assert!(error.contains("contains the compile cache"), "{error}");
    check(None, dir(&mkdir(base.join("other")), true), &[cache]).unwrap();
    // Named with `..` through a symlink: `..` is the symlink target's
    // parent, as the kernel has it.
    let deep = mkdir(base.join("deep/er"));
    symlink(&deep, home.join("up")).unwrap();
    let beside = file(&home.join("up/../cache"), Role::CompileCache);
    assert_eq!(Reach::of(&beside.path).end, base.join("deep/cache"));
    check(
        None,
        dir(&base.join("deep"), true),
        std::slice::from_ref(&beside),
    )
    .unwrap_err();
}

#[test]
fn a_read_only_preopen_may_hold_no_private_key_but_its_own_tenants() {
    let base = folder();
    let keys = mkdir(base.join("keys"));
    let (a, b) = (
        key(&touch(keys.join("a.key")), Some("a")),
        key(&touch(keys.join("b.key")), Some("b")),
    );
    let server = key(&touch(keys.join("default.key")), None);
    let cert = file(&touch(keys.join("b.pem")), Role::Certificate);
    check(Some("a"), dir(&keys, false), &[a.clone(), cert.clone()]).unwrap();
    let error = check(Some("a"), dir(&keys, false), &[a.clone(), b.clone()]).unwrap_err();
    assert!(
        error.starts_with(&format!(
            "tenant 'a': the read-only directory '{}' contains tenant 'b''s private key '{}': \
             its guests could read a private key that is not theirs",
            keys.display(),
            b.path.display()
        )),
        "{error}"
    );
    // A config file's default key is no tenant's.
    check(Some("a"), dir(&keys, false), std::slice::from_ref(&server)).unwrap_err();
    // `catshost serve COMPONENT --tls-key`: the one component's own.
    check(None, dir(&keys, false), std::slice::from_ref(&server)).unwrap();
    check(None, dir(&keys, false), std::slice::from_ref(&a)).unwrap_err();
    // Writable, not even its own.
    check(Some("a"), dir(&keys, true), &[a]).unwrap_err();
}

/// A bind mount (or a hard-linked folder) has another path but the
/// same device and inode: the preopen is found by those.
#[test]
fn a_preopen_that_is_the_same_folder_under_another_path_is_found_by_device_and_inode() {
    let opened = |writable, id| Opened {
        tenant: 0,
        number: 0,
        writable,
        dir: PathBuf::from("/mnt/bound"),
        id,
    };
    let reach = Reach {
        entries: ["/home", "/home/u", "/home/u/.cache", "/home/u/.cache/k.key"]
            .map(PathBuf::from)
            .into(),
        end: PathBuf::from("/home/u/.cache/k.key"),
        // /, /home, /home/u, /home/u/.cache
        on_the_way: vec![(1, 2), (1, 3), (1, 4), (1, 5)],
        holding_end: vec![(1, 5), (1, 4), (1, 3), (1, 2)],
    };
    for (writable, id, reaches) in [
        (true, (1, 4), true),
        (false, (1, 5), true),
        (true, (1, 9), false),
        (false, (2, 5), false),
    ] {
        let index = Index::new(vec![opened(writable, id)]);
        assert_eq!(
            index.reaching(&reach),
            if reaches { vec![0] } else { vec![] },
            "{writable} {id:?}"
        );
    }
    // And the walk collects them from the file system.
    let base = folder();
    let path = touch(base.join("a/b.key"));
    let reach = Reach::of(&path);
    let id = identity(&base).unwrap();
    assert!(reach.on_the_way.contains(&id) && reach.holding_end.contains(&id));
    assert!(!reach.on_the_way.contains(&identity(&path).unwrap()));
}

#[test]
fn a_preopen_that_cannot_be_resolved_refuses_the_check_and_none_costs_nothing() {
    let gone = folder().join("gone");
    let files = [file(Path::new("/"), Role::CompileCache)];
    let error = check(Some("a"), dir(&gone, false), &files).unwrap_err();
    assert!(error.contains("cannot be checked"), "{error}");
    check_preopens(
        &[Grant {
            tenant: None,
            dirs: &[],
        }],
        &files,
    )
    .unwrap();
}

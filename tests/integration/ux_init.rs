//! `rekey init`: a commented starter config, mode 0600, never over an existing file
//! without --force, and valid as written.

use crate::ux_support::{assert_envelope, Dir};
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn init_writes_a_private_commented_config_that_validates() {
    let d = Dir::new();
    let r = d.rekey(&["init"]);
    r.assert_code(0);
    assert!(r.stdout.contains("wrote rekey.toml"), "{}", r.stdout);
    let path = d.path("rekey.toml");
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() >= 10,
        "commented:\n{text}"
    );
    for part in [
        "[defaults]",
        "[stores.",
        "type = \"file\"",
        "[[credentials]]",
        "type = \"postgres\"",
        "${ORDERS_ADMIN_URL}",
    ] {
        assert!(text.contains(part), "starter config lacks {part}");
    }
    let mut cmd = d.command();
    cmd.env("ORDERS_ADMIN_URL", "postgres://rotator:pw@127.0.0.1:9/postgres")
        .arg("validate");
    let r = crate::util::run(cmd, "");
    r.assert_code(0);
    assert_eq!(r.stdout.trim(), "ok: 1 credential, 1 store");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let d = Dir::new();
    d.write("rekey.toml", "# mine\n");
    let r = d.rekey(&["init"]);
    r.assert_code(2);
    r.assert_one_error(&["rekey.toml already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(d.path("rekey.toml")).unwrap(), "# mine\n");
    let r = d.rekey(&["init", "--force"]);
    r.assert_code(0);
    assert!(std::fs::read_to_string(d.path("rekey.toml"))
        .unwrap()
        .contains("[[credentials]]"));
    assert_eq!(mode(&d.path("rekey.toml")), 0o600);
}

#[test]
fn init_writes_where_told() {
    let d = Dir::new();
    std::fs::create_dir(d.path("conf")).unwrap();
    let r = d.rekey(&["-o", "json", "init", "conf/prod.toml"]);
    r.assert_code(0);
    let doc = assert_envelope("init", &r.stdout);
    assert_eq!(doc["path"], "conf/prod.toml");
    assert!(d.path("conf/prod.toml").exists());
    // -c names the file when PATH is absent.
    let r = d.rekey(&["-c", "conf/other.toml", "init"]);
    r.assert_code(0);
    assert!(d.path("conf/other.toml").exists());
    // A missing directory is an error, not created behind the user's back.
    let r = d.rekey(&["init", "nowhere/rekey.toml"]);
    r.assert_code(2);
    r.assert_one_error(&["nowhere", "does not exist"]);
}

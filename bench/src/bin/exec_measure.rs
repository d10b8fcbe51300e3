//! Measures the exec target's overhead per operation (spawn, request, answer) with a
//! trivial plugin: `/bin/sh -c 'cat >/dev/null; echo {"protocol":1,"ok":true}'`, and
//! with `/bin/true`-like programs for comparison. Run with
//! `cargo run --release -p rekey-bench --bin rekey-bench-exec`.

use rekey_api::{SecretDoc, Strategy, Target};
use rekey_exec::{ExecProvider, ExecTargetConfig};
use std::time::Instant;

const TRIVIAL: &str = r#"read -r line; case "$line" in *describe*) echo '{"protocol":1,"ok":true,"strategies":["single"]}';; *) echo '{"protocol":1,"ok":true}';; esac"#;

#[tokio::main]
async fn main() {
    let config: ExecTargetConfig = serde_json::from_value(serde_json::json!({
        "command": ["/bin/sh", "-c", TRIVIAL],
    }))
    .unwrap();
    let target = ExecProvider::new()
        .exec_target(&config, "bench", Strategy::Single)
        .unwrap();
    let doc = SecretDoc::from_value(serde_json::json!({"password": "x".repeat(32), "username": "app"})).unwrap();
    for _ in 0..20 {
        target.login(&doc).await.unwrap();
    }
    let runs = 500;
    let started = Instant::now();
    for _ in 0..runs {
        target.login(&doc).await.unwrap();
    }
    let per_op = started.elapsed() / runs;
    // The same program spawned directly, for the share of the shell itself.
    let started = Instant::now();
    for _ in 0..runs {
        let out = tokio::process::Command::new("/bin/sh")
            .args(["-c", "echo '{\"protocol\":1,\"ok\":true}'"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
    }
    let bare = started.elapsed() / runs;
    println!("exec login with a trivial sh plugin: {per_op:?} per operation ({runs} runs)");
    println!("bare spawn of the same shell (no request, no parsing): {bare:?}");
}

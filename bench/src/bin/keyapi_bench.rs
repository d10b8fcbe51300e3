//! Benchmark of issue 14: 100 `http` credentials (the issue's minting configuration)
//! rotated by the `rekey` binary at `--parallel 8` against the testbed key API, versus a
//! minimal client doing the same requests (create, login with the new key, delete the
//! old key, login with the old key) with 8 at a time, in the same run. A fourth contender
//! is that minimal client plus the three durable writes a client that keeps its keys
//! needs (an `fdatasync`ed line appended to a file at each point where rekey makes a
//! store write durable): the floor for anything that survives a crash.
//!
//! The same comparison is repeated against a server that answers every request after a
//! fixed latency (default: 0, 5 and 20 ms), as a service across a network does: a new
//! server, store and set of keys for each latency, all three contenders facing the same
//! latency.
//!
//! ```sh
//! cargo build --release --bin rekey
//! cargo run --release -p rekey-bench --bin rekey-bench-keyapi [-- ROUNDS [LATENCIES_MS]]
//! ```
//! `ROUNDS` defaults to 3, `LATENCIES_MS` (comma-separated) to `0,5,20`. `REKEY_BIN`
//! names the binary (default `target/release/rekey`).

use rekey_api::{RevokeOptions, SecretDoc, Strategy, Target};
use rekey_http::{HttpProvider, HttpTargetConfig};
use rekey_testbed::keyapi::{KeyApi, KeyApiOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CREDENTIALS: usize = 100;
const PARALLEL: usize = 8;

fn config(api: &KeyApi) -> String {
    let mut text = String::from(
        "[defaults]\nparallel = 8\ngrace = \"0s\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n",
    );
    for i in 0..CREDENTIALS {
        text.push_str(&format!(
            r#"
[[credentials]]
name = "api-{i}"
store = "local"
key = "api/{i}"
strategy = "dual"
target = {{ type = "http", base_url = "{url}", headers = {{ Authorization = "Bearer ${{KEYAPI_ADMIN}}" }},
  secret_fields = ["api_key"],
  create = {{ method = "POST", path = "/v1/keys", json = {{ name = "rekey {{{{credential}}}}" }}, ok = [201],
             fields = {{ api_key = "/data/secret", key_id = "/data/id" }} }},
  login  = {{ method = "GET", path = "/v1/me", headers = {{ Authorization = "Bearer {{{{api_key}}}}" }}, ok = [200], rejected = [401] }},
  revoke = {{ method = "DELETE", path = "/v1/keys/{{{{key_id}}}}", ok = [204, 404] }} }}
"#,
            url = api.url()
        ));
    }
    text
}

fn rekey(bin: &str, dir: &std::path::Path, api: &KeyApi, args: &[&str], stdin: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .current_dir(dir)
        .env("KEYAPI_ADMIN", api.admin_token())
        .args(["-q", "-c", "rekey.toml"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rekey (build it with `cargo build --release --bin rekey`)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rekey {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Appends `line` to `journal` and waits until it is on disk (`fdatasync`): one durable
/// write, made the simplest way (no batching; concurrent callers' flushes may coincide
/// in the kernel).
async fn durable_write(journal: &Arc<std::fs::File>, line: String) {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || {
        // O_APPEND: one write(2) of a short line lands whole at the end.
        (&*journal).write_all(line.as_bytes()).unwrap();
        journal.sync_data().unwrap();
    })
    .await
    .unwrap();
}

/// The same requests as one rotation, by a client that does nothing else; with a
/// `journal`, also the three durable writes at the points where rekey makes them (the
/// new key before it is used, the new key as the one in use before the old is deleted,
/// the old key's removal once it is refused): the least a client that can lose neither
/// a minted key nor track of an old one must add.
async fn minimal(
    api: &KeyApi,
    current: Vec<(String, String)>,
    journal: Option<Arc<std::fs::File>>,
) -> (Duration, Vec<(String, String)>) {
    // The same client setup as the target's (rustls with ring; plain HTTP here).
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap();
    let admin = format!("Bearer {}", api.admin_token());
    let url = Arc::new(api.url());
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for (i, (old_id, old_secret)) in current.into_iter().enumerate() {
        let (client, admin, url, semaphore) = (client.clone(), admin.clone(), url.clone(), semaphore.clone());
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.unwrap();
            let created = client
                .post(format!("{url}/v1/keys"))
                .header("Authorization", &admin)
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"name":"rekey api-{i}"}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let body: serde_json::Value = serde_json::from_slice(&created.bytes().await.unwrap()).unwrap();
            let id = body["data"]["id"].as_str().unwrap().to_owned();
            let secret = body["data"]["secret"].as_str().unwrap().to_owned();
            if let Some(j) = &journal {
                durable_write(j, format!("{i} pending {id} {secret}\n")).await;
            }
            let me = |key: String| {
                client
                    .get(format!("{url}/v1/me"))
                    .header("Authorization", format!("Bearer {key}"))
                    .send()
            };
            assert_eq!(me(secret.clone()).await.unwrap().status(), 200);
            if let Some(j) = &journal {
                durable_write(j, format!("{i} current {id}\n")).await;
            }
            let deleted = client
                .delete(format!("{url}/v1/keys/{old_id}"))
                .header("Authorization", &admin)
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status(), 204);
            assert_eq!(me(old_secret).await.unwrap().status(), 401);
            if let Some(j) = &journal {
                durable_write(j, format!("{i} revoked {old_id}\n")).await;
            }
            (id, secret)
        }));
    }
    let mut next = Vec::new();
    for t in tasks {
        next.push(t.await.unwrap());
    }
    (started.elapsed(), next)
}

/// The same rotations through the `http` target in this process (no store, no engine):
/// prepare (create), verify (login new), revoke (delete), login old (refused).
async fn in_process(api: &KeyApi, current: Vec<(String, String)>) -> (Duration, Vec<(String, String)>) {
    let config: HttpTargetConfig = serde_json::from_value(serde_json::json!({
        "base_url": api.url(),
        "headers": {"Authorization": format!("Bearer {}", api.admin_token())},
        "secret_fields": ["api_key"],
        "create": {"method": "POST", "path": "/v1/keys", "json": {"name": "rekey {{credential}}"}, "ok": [201],
                   "fields": {"api_key": "/data/secret", "key_id": "/data/id"}},
        "login": {"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{api_key}}"}, "ok": [200], "rejected": [401]},
        "revoke": {"method": "DELETE", "path": "/v1/keys/{{key_id}}", "ok": [204, 404]}
    }))
    .unwrap();
    let provider = HttpProvider::new();
    let targets: Vec<_> = (0..current.len())
        .map(|i| {
            Arc::new(
                provider
                    .http_target(&config, &format!("api-{i}"), Strategy::Dual)
                    .unwrap(),
            )
        })
        .collect();
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for (t, (id, secret)) in targets.into_iter().zip(current) {
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.unwrap();
            let old = SecretDoc::from_value(serde_json::json!({"api_key": secret, "key_id": id})).unwrap();
            let new = t.prepare(Some(&old), rekey_api::Secret::from("unused")).await.unwrap();
            t.verify(&new).await.unwrap();
            t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
            assert!(t.login(&old).await.is_err());
            (
                new.get_str("key_id").unwrap().to_owned(),
                new.get_str("api_key").unwrap().to_owned(),
            )
        }));
    }
    let mut next = Vec::new();
    for t in tasks {
        next.push(t.await.unwrap());
    }
    (started.elapsed(), next)
}

/// Medians of one latency's rounds.
struct Medians {
    latency_ms: u64,
    rekey: Duration,
    in_process: Duration,
    minimal: Duration,
    durable: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `rounds` rounds of the three contenders against a new server answering after
/// `latency_ms`, with a store and keys of their own.
async fn scenario(bin: &str, rounds: usize, latency_ms: u64) -> Medians {
    let options = KeyApiOptions::quiet().with_latency(Duration::from_millis(latency_ms));
    let api = KeyApi::start_with(options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rekey.toml"), config(&api)).unwrap();
    let mut batch = String::new();
    for i in 0..CREDENTIALS {
        let k = api.mint("by hand");
        batch.push_str(&format!(
            "{{\"name\": \"api-{i}\", \"value\": {{\"api_key\": \"{}\", \"key_id\": \"{}\"}}}}\n",
            k.secret, k.id
        ));
    }
    rekey(bin, dir.path(), &api, &["import", "--batch", "--no-verify"], &batch);
    let mut minimal_keys: Vec<(String, String)> = (0..CREDENTIALS)
        .map(|_| {
            let k = api.mint("minimal");
            (k.id, k.secret)
        })
        .collect();
    let mut durable_keys: Vec<(String, String)> = (0..CREDENTIALS)
        .map(|_| {
            let k = api.mint("durable");
            (k.id, k.secret)
        })
        .collect();
    // On the same file system as rekey's store, as a journal that only grows.
    let journal = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("durable-client.log"))
            .unwrap(),
    );
    if let Ok(script) = std::env::var("REKEY_BENCH_HOLD") {
        // Probe: run a script with the directory and the admin token, then stop.
        let status = Command::new("sh")
            .args([&script, dir.path().to_str().unwrap(), api.admin_token()])
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut target_keys: Vec<(String, String)> = (0..CREDENTIALS)
        .map(|_| {
            let k = api.mint("target");
            (k.id, k.secret)
        })
        .collect();
    let (mut ours, mut floor, mut targets, mut durables) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let before = api.request_count();
        let t = rekey(
            bin,
            dir.path(),
            &api,
            &["rotate", "--parallel", "8", "--grace", "0s"],
            "",
        );
        let requests = api.request_count() - before;
        let before = api.request_count();
        let (m, next) = minimal(&api, std::mem::take(&mut minimal_keys), None).await;
        minimal_keys = next;
        let floor_requests = api.request_count() - before;
        let (d, next) = minimal(&api, std::mem::take(&mut durable_keys), Some(journal.clone())).await;
        durable_keys = next;
        let before = api.request_count();
        let (h, next) = in_process(&api, std::mem::take(&mut target_keys)).await;
        target_keys = next;
        let target_requests = api.request_count() - before;
        println!(
            "latency {latency_ms:>2} ms, round {round}: rekey {:>7.1} ms ({requests} requests), http target in-process {:>7.1} ms ({target_requests} requests), minimal client {:>7.1} ms ({floor_requests} requests), with durable writes {:>7.1} ms",
            ms(t),
            ms(h),
            ms(m),
            ms(d),
        );
        ours.push(t);
        floor.push(m);
        durables.push(d);
        targets.push(h);
    }
    assert_eq!(
        api.live_keys().len(),
        4 * CREDENTIALS,
        "one key per credential of each contender"
    );
    Medians {
        latency_ms,
        rekey: median(ours),
        in_process: median(targets),
        minimal: median(floor),
        durable: median(durables),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let latencies: Vec<u64> = std::env::args()
        .nth(2)
        .map(|a| {
            a.split(',')
                .map(|l| l.trim().parse().expect("LATENCIES_MS: comma-separated milliseconds"))
                .collect()
        })
        .unwrap_or_else(|| vec![0, 5, 20]);
    let bin = std::env::var("REKEY_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/rekey").to_owned());
    println!(
        "{CREDENTIALS} credentials, parallel {PARALLEL}, {rounds} round(s) per latency; load average at start {}",
        load_average()
    );
    let mut results = Vec::new();
    for latency in latencies {
        results.push(scenario(&bin, rounds, latency).await);
    }
    println!("load average at end {}", load_average());
    println!("median of {rounds}:");
    println!(
        "| latency | minimal client | http target in-process | rekey rotate | rekey - minimal, per credential | minimal client with durable writes | rekey / that |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in &results {
        println!(
            "| {} ms | {:.1} ms | {:.1} ms ({:.2}x) | {:.1} ms ({:.2}x) | {:.2} ms | {:.1} ms ({:.2}x) | {:.2}x |",
            m.latency_ms,
            ms(m.minimal),
            ms(m.in_process),
            m.in_process.as_secs_f64() / m.minimal.as_secs_f64(),
            ms(m.rekey),
            m.rekey.as_secs_f64() / m.minimal.as_secs_f64(),
            (ms(m.rekey) - ms(m.minimal)) / CREDENTIALS as f64,
            ms(m.durable),
            m.durable.as_secs_f64() / m.minimal.as_secs_f64(),
            m.rekey.as_secs_f64() / m.durable.as_secs_f64(),
        );
    }
}

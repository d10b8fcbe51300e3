//! Timings of the Redis target's steps against the Redis server on 127.0.0.1:6379 (or
//! `REKEY_REDIS_PORT`), whose `default` user must have no password; testbed's
//! [`RedisServer::machine`], which starts a throwaway `redis-server` when nothing answers
//! there. Creates an admin and a few users with unique names and deletes them at the end.
//!
//! ```sh
//! cargo run --release -p rekey-bench --bin rekey-bench-redis
//! ```

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, RevokeOptions, Secret, SecretDoc, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTargetConfig};
use rekey_testbed::RedisServer;
use std::time::{Duration, Instant};

/// Users created here (as the `default` user), deleted on drop.
struct Users {
    server: RedisServer,
    names: Vec<String>,
}

impl Users {
    fn create(&mut self, prefix: &str, rules: &[&str]) -> (String, Secret) {
        let name = unique_name(prefix);
        let password = random_password(32);
        let hash = format!("#{}", acl_password_hash(&password));
        let mut args = vec!["ACL", "SETUSER", &name, "on", &hash];
        args.extend_from_slice(rules);
        self.server.cmd(&args);
        self.names.push(name.clone());
        (name, password)
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.server.try_cmd(&["ACL", "DELUSER", name]);
        }
    }
}

fn doc(user: &str, password: &Secret) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", user);
    d.set_password(password);
    d
}

fn report(what: &str, total: Duration, n: u32) {
    println!("{what:<55} {:>8.1} µs", total.as_secs_f64() * 1e6 / f64::from(n));
}

#[tokio::main]
async fn main() {
    let server = RedisServer::machine();
    let port = server.port();
    let mut users = Users {
        server,
        names: Vec::new(),
    };
    let (admin, admin_pw) = users.create("rk_measure_admin", &["~*", "&*", "+@all"]);
    let admin_url = RedactedDsn::new(format!("redis://{admin}:{}@127.0.0.1:{port}", admin_pw.expose()));
    let config = |user: &str| {
        let mut c = RedisTargetConfig::new("127.0.0.1", user);
        c.port = port;
        c.admin = Some(admin_url.clone());
        c
    };

    let n = 20_000;
    let pw = random_password(32);
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(acl_password_hash(std::hint::black_box(&pw)));
    }
    report("SHA-256 hash of a 32-character password", started.elapsed(), n);

    let provider = RedisProvider::new();
    let (user, password) = users.create("rk_measure", &["~*", "+@all"]);
    let t = provider.redis_target(&config(&user), Strategy::Dual).unwrap();
    let mut current = doc(&user, &password);
    t.preflight(Some(&current)).await.unwrap();

    let n = 300;
    let started = Instant::now();
    for _ in 0..n {
        t.login(&current).await.unwrap();
    }
    report("login (fresh TCP + AUTH + ACL WHOAMI)", started.elapsed(), n);

    let wrong = doc(&user, &random_password(32));
    let started = Instant::now();
    for _ in 0..n {
        t.login(&wrong).await.unwrap_err();
    }
    report("refused login (WRONGPASS)", started.elapsed(), n);

    for strategy in [Strategy::Dual, Strategy::Single] {
        let t = provider.redis_target(&config(&user), strategy).unwrap();
        let n = 200;
        let (mut apply, mut revoke, mut whole) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..n {
            let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
            let start = Instant::now();
            t.apply(&new, Some(&current)).await.unwrap();
            let applied = start.elapsed();
            t.verify(&new).await.unwrap();
            let before_revoke = Instant::now();
            t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
            revoke += before_revoke.elapsed();
            t.login(&current).await.unwrap_err();
            whole += start.elapsed();
            apply += applied;
            current = new;
        }
        report(&format!("{strategy}: apply on the shared admin connection"), apply, n);
        report(&format!("{strategy}: revoke"), revoke, n);
        report(&format!("{strategy}: apply + verify + revoke + old refused"), whole, n);
    }

    // Eight users rotated concurrently, all on the one admin connection.
    let mut targets = Vec::new();
    for _ in 0..8 {
        let (u, p) = users.create("rk_measure_par", &["~*", "+@all"]);
        targets.push((provider.redis_target(&config(&u), Strategy::Dual).unwrap(), doc(&u, &p)));
    }
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut news = Vec::new();
        for (t, cur) in &targets {
            news.push(t.prepare(Some(cur), random_password(32)).await.unwrap());
        }
        let applies = targets.iter().zip(&news).map(|((t, cur), new)| t.apply(new, Some(cur)));
        for r in futures_join_all(applies).await {
            r.unwrap();
        }
        let revokes = targets
            .iter()
            .zip(&news)
            .map(|((t, cur), new)| t.revoke(cur, new, RevokeOptions::default()));
        for r in futures_join_all(revokes).await {
            r.unwrap();
        }
        for ((_, cur), new) in targets.iter_mut().zip(news) {
            *cur = new;
        }
    }
    report(
        "8 users concurrently: apply + revoke, per user",
        started.elapsed(),
        rounds * 8,
    );
    println!("admin connections opened: {}", provider.admin_connections_opened());
}

/// Runs the futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}

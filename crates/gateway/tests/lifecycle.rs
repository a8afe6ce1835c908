//! The gateway's life across instances: a conversion whose instance dies is finished after a
//! restart, two instances on one PostgreSQL share their records, and token auth.

mod support;

use aero_test_support::{sha256, S3Server};
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

/// A gateway in its own runtime on its own thread, so it can be killed outright (every task,
/// the conversion included, stops without any shutdown step).
struct Killable {
    url: String,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_killable(settings: aero_gateway::Settings) -> Killable {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (kill, killed) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = runtime.block_on(start_with_storage(settings));
        url_tx.send(running.url.clone()).unwrap();
        let _ = killed.recv();
        std::mem::forget(running);
        runtime.shutdown_background();
    });
    Killable {
        url: url_rx.recv().unwrap(),
        kill,
        thread,
    }
}

async fn conversion_killed_midway_is_finished_after_restart(db: Database) {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(db, dir.path()).await;
    let mut s = settings(&s3, &url);
    s.conversion_concurrency = 1;
    s.job_lease = Duration::from_secs(2);
    let first = start_killable(s.clone());
    let alice = Client::new(&first.url, "alice");
    let data = disk_bytes(64 * 1024 * 1024, 7);
    let id = alice.upload(&data, PART).await;

    // Kill the instance as soon as the conversion has stored its first chunks.
    let (_, rec) = alice.get(&format!("/v1/images/{id}")).await;
    let version = rec["version"].as_str().unwrap().to_string();
    let chunks = s3
        .bucket_dir()
        .join(format!("images/{id}/{version}/chunks"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&chunks).map(|d| d.count()).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the conversion never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill.send(()).unwrap();
    first.thread.join().unwrap();
    let stored = std::fs::read_dir(&chunks).unwrap().count();
    assert!(
        stored < 64,
        "killed after the conversion had finished ({stored} chunks)"
    );
    assert!(!chunks.parent().unwrap().join("manifest.json").exists());

    // A new instance on the same database takes the job over once the claim lapses.
    let second = start(&s3, s).await;
    let alice = Client::new(&second.url, "alice");
    let rec = alice.settled(&id, Duration::from_secs(180)).await;
    assert_eq!(rec["state"], "ready", "{rec}");
    let mut joined = Vec::new();
    for i in 0..64 {
        let (status, _, body) = alice
            .bytes(alice.req(Method::GET, &format!("/v1/images/{id}/chunked/chunks/{i}")))
            .await;
        assert_eq!(status, 200);
        joined.extend(body);
    }
    assert_eq!(sha256(&joined), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conversion_killed_midway_is_finished_after_restart() {
    conversion_killed_midway_is_finished_after_restart(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conversion_killed_midway_is_finished_after_restart() {
    conversion_killed_midway_is_finished_after_restart(Database::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_see_each_others_records() {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(Database::Postgres, dir.path()).await;
    let a = start(&s3, settings(&s3, &url)).await;
    let b = start(&s3, settings(&s3, &url)).await;
    let on_a = Client::new(&a.url, "alice");
    let on_b = Client::new(&b.url, "alice");

    // Created on A, uploaded through B's URLs, completed on A, ready on both.
    let (id, upload_id) = on_a.create().await;
    let (status, rec) = on_b.get(&format!("/v1/images/{id}")).await;
    assert_eq!((status, rec["state"].as_str()), (200, Some("uploading")));
    let data = disk_bytes(6 * 1024 * 1024, 9);
    let parts = on_b.upload_parts(&id, &upload_id, &data, PART).await;
    let (status, done) = on_a
        .post(
            &format!("/v1/images/{id}/complete"),
            serde_json::json!({"uploadId": upload_id, "parts": parts}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        on_b.settled(&id, Duration::from_secs(120)).await["state"],
        "ready"
    );
    let (_, list) = on_a.get("/v1/images").await;
    assert_eq!(list["images"][0]["state"], "ready");
    let (status, _, body) = on_b
        .bytes(on_b.req(Method::GET, &format!("/v1/images/{id}/range")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_auth_accepts_live_tokens_only() {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(Database::Sqlite, dir.path()).await;
    let mut s = settings(&s3, &url);
    s.auth_mode = aero_gateway::AuthMode::Token;
    let gw = start(&s3, s).await;
    let db = aero_gateway::Db::open(&url, 1).await.unwrap();
    let made = aero_gateway::auth::new_token("alice").unwrap();
    db.insert_token(&made.stored).await.unwrap();
    let http = reqwest::Client::new();
    let call = |token: Option<String>| {
        let mut req = http.post(format!("{}/v1/images", gw.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, e) = call(None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("UNAUTH")));
    let (status, body) = call(Some(made.token.clone())).await;
    assert_eq!(status, 200, "{body}");
    let id = body["imageId"].as_str().unwrap().to_string();
    // The image belongs to the token's user.
    let rec: Value = http
        .get(format!("{}/v1/images/{id}", gw.url))
        .bearer_auth(&made.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["ownerId"], "alice");
    // A wrong secret with a real id, garbage, and X-User-Id are all refused.
    let forged = format!("agw_{}_{}", made.stored.id, "0".repeat(64));
    assert_eq!(call(Some(forged)).await.0, 401);
    assert_eq!(call(Some("nonsense".into())).await.0, 401);
    let resp = http
        .post(format!("{}/v1/images", gw.url))
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Revoked: refused.
    assert_eq!(db.revoke_tokens("alice", None).await.unwrap(), 1);
    assert_eq!(call(Some(made.token.clone())).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversions_run_at_most_max_conversions_at_once() {
    let s3 = S3Server::start();
    let dir = tempdir();
    let url = fresh_database(Database::Sqlite, dir.path()).await;
    let mut s = settings(&s3, &url);
    s.max_conversions = 1;
    s.conversion_concurrency = 1;
    let gw = start(&s3, s).await;
    let alice = Client::new(&gw.url, "alice");
    let db = aero_gateway::Db::open(&url, 1).await.unwrap();
    let a = alice.upload(&disk_bytes(16 * 1024 * 1024, 11), PART).await;
    let b = alice.upload(&disk_bytes(16 * 1024 * 1024, 12), PART).await;
    let (mut most, mut waited) = (0, false);
    loop {
        let recs = [
            db.get(&a).await.unwrap().unwrap(),
            db.get(&b).await.unwrap().unwrap(),
        ];
        let running = recs.iter().filter(|r| r.job_owner.is_some()).count();
        most = most.max(running);
        waited |= running == 1
            && recs
                .iter()
                .any(|r| r.state == aero_gateway::State::Processing && r.job_owner.is_none());
        if recs
            .iter()
            .all(|r| r.state != aero_gateway::State::Processing)
        {
            assert!(
                recs.iter().all(|r| r.state == aero_gateway::State::Ready),
                "{recs:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(most, 1, "never more than max_conversions at once");
    assert!(waited, "one conversion waited for the other");
}

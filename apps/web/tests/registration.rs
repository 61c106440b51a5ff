//! Every job has its consumer route and its vercel.json trigger; every trigger and cron
//! names a route that exists (and is guarded).

mod common;

use axum::body::Body;
use common::TestApp;
use http::{Request, StatusCode};

#[tokio::test]
async fn every_job_has_a_route_and_a_trigger_and_every_cron_a_guarded_route() {
    let app = TestApp::new().await;
    let triggers = &app.state.vercel.queue_triggers;
    for handler in jobs::handlers() {
        let topic = handler.topic();
        let trigger = triggers.iter().find(|t| t.topic == topic);
        let trigger = trigger.unwrap_or_else(|| panic!("job {topic:?} has no queue/v2beta trigger in vercel.json"));
        assert_eq!(trigger.route_path, format!("/api/queue/{topic}"));
        // Its Vercel Function: the file vercel.json names, and the binary Vercel builds for it.
        assert!(
            common::repo_root().join(&trigger.function_key).is_file(),
            "{} is in vercel.json but not in the repo",
            trigger.function_key
        );
        let manifest = std::fs::read_to_string(common::repo_root().join("apps/web/Cargo.toml")).unwrap();
        let bin = format!("[[bin]]\nname = \"{topic}\"\npath = \"../../{}\"\n", trigger.function_key);
        assert!(manifest.contains(&bin), "apps/web/Cargo.toml has no [[bin]] for {}", trigger.function_key);
    }
    for trigger in triggers {
        // Without the queue's proof a real consumer route answers 401; a missing one 404s.
        let (status, _) = app.call(Request::post(&trigger.route_path).body(Body::from("{}")).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} has no consumer route", trigger.route_path);
        assert!(
            jobs::handlers().iter().any(|h| h.topic() == trigger.topic),
            "trigger for unknown job {}",
            trigger.topic
        );
    }
    for cron in &app.state.vercel.crons {
        let (status, _) = app.call(Request::get(&cron.path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "cron {} is missing or unguarded", cron.path);
    }
}

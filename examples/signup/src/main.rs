//! `cargo run -p example-signup` → http://127.0.0.1:3100 (`DATABASE_URL`, default
//! `sqlite://signup.db?mode=rwc`; `ADMIN_TOKEN` opens /admin; `CRON_SECRET` guards the cron,
//! or `IS_LOCAL_DEV=true` on localhost).

use vqs_axum::{ServerLimits, VqsSettings, Workers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let url = env("DATABASE_URL").unwrap_or_else(|| "sqlite://signup.db?mode=rwc".into());
    let settings = VqsSettings {
        admin_token: auth::Secret::new(env("ADMIN_TOKEN")),
        cron_auth: auth::CronAuth::from_values(env("CRON_SECRET"), env("IS_LOCAL_DEV").as_deref() == Some("true")),
        ..VqsSettings::default()
    };
    let state = example_signup::state(example_signup::open_queue(&url).await?, settings)?;
    let app = example_signup::app(state.clone());
    vqs_axum::require_routes(&app, &state).await?;
    let workers = Workers::start(&state, app.clone(), vqs::DispatcherConfig::default()).await?;
    let listener = tokio::net::TcpListener::bind(env("ADDR").unwrap_or_else(|| "127.0.0.1:3100".into())).await?;
    println!("example-signup listening on http://{}", listener.local_addr()?);
    vqs_axum::serve(listener, app, &state, workers, ServerLimits::default()).await?;
    Ok(())
}

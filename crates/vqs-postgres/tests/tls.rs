//! TLS to PostgreSQL: the URL's `sslmode` is honoured. Without the `tls` feature a URL that
//! requires TLS is refused at once, saying which feature to build with; with it (run by
//! `cargo test -p vqs-postgres --features tls`, and by e2e/vercel-build through the
//! deployed function binaries) `sslmode=require` really encrypts. Needs the server at
//! `VQS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`); the TLS test
//! needs it to have `ssl = on`.

use vqs_postgres::{PgPoolSize, PgStore};

fn server() -> String {
    std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn a_url_that_requires_tls_is_refused_naming_the_feature_to_build_with() {
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{}/postgres?sslmode={mode}", server());
        let err = PgStore::connect(&url).await.unwrap_err().to_string();
        assert!(err.contains(&format!("sslmode={mode}")) && err.contains("--features tls"), "{err}");
    }
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let url = format!("{}/postgres?sslmode=require", server());
    let store = PgStore::connect_with(&url, PgPoolSize::total(4).unwrap()).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is not encrypted");
}

#[test]
fn a_pool_is_split_between_the_main_and_the_hot_path() {
    assert_eq!(PgPoolSize::total(3), None);
    assert_eq!(PgPoolSize::total(4), Some(PgPoolSize { main: 2, hot: 2 }));
    assert_eq!(PgPoolSize::total(5), Some(PgPoolSize { main: 3, hot: 2 }));
    assert_eq!(PgPoolSize::total(20), Some(PgPoolSize::SERVER));
    assert_eq!(PgPoolSize::total(16), Some(PgPoolSize { main: 12, hot: 4 }));
    assert_eq!(PgPoolSize::total(100), Some(PgPoolSize { main: 95, hot: 5 }));
}

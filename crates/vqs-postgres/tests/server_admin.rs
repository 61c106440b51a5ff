//! `drop_database` removes what `create_database` made, even with connections open, and
//! refuses names that are not plain identifiers; `checkpoint` runs. On the machine's PostgreSQL server
//! (`VQS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`); fails when it
//! is unreachable.

use sqlx::Connection;

fn server() -> String {
    std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[tokio::test]
async fn a_created_database_is_dropped_even_while_connected() {
    let name = format!("vqs_test_{}", uuid::Uuid::new_v4().simple());
    let url = vqs_postgres::create_database(&server(), &name).await.expect("create");
    let mut open = sqlx::PgConnection::connect(&url).await.expect("connect");
    vqs_postgres::drop_database(&server(), &name).await.expect("drop");
    assert!(sqlx::PgConnection::connect(&url).await.is_err(), "the database is gone");
    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err(), "its connections were closed");
    // Dropping again is not an error.
    vqs_postgres::drop_database(&server(), &name).await.expect("drop again");
}

#[tokio::test]
async fn names_that_are_not_identifiers_are_refused() {
    for name in ["", "x; DROP DATABASE postgres", "a-b"] {
        assert!(vqs_postgres::drop_database(&server(), name).await.is_err(), "{name:?}");
    }
}

#[tokio::test]
async fn a_checkpoint_runs() {
    vqs_postgres::checkpoint(&server()).await.expect("checkpoint");
}

#[tokio::test]
async fn leftover_test_databases_older_than_the_cutoff_and_unused_are_dropped() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let old = |tag: &str| format!("vqs_test_{}_{tag}{}", now - 7200, uuid::Uuid::new_v4().simple());
    let (left, in_use, fresh) = (old("left"), old("used"), format!("vqs_test_{now}_{}", uuid::Uuid::new_v4().simple()));
    for name in [&left, &in_use, &fresh] {
        vqs_postgres::create_database(&server(), name).await.expect("create");
    }
    let in_use_url = format!("{}/{in_use}", server());
    let mut open = sqlx::PgConnection::connect(&in_use_url).await.expect("connect");
    vqs_postgres::drop_stale_test_databases(&server(), now - 3600).await.expect("sweep");
    let exists = |name: String| async move {
        sqlx::PgConnection::connect(&format!("{}/{name}", server())).await.map(drop).is_ok()
    };
    assert!(!exists(left.clone()).await, "an old unused one goes");
    assert!(exists(in_use.clone()).await, "one in use stays");
    assert!(exists(fresh.clone()).await, "a recent one stays");
    sqlx::query("SELECT 1").execute(&mut open).await.expect("its session was not closed");
    drop(open);
    for name in [&in_use, &fresh] {
        vqs_postgres::drop_database(&server(), name).await.unwrap();
    }
    // What every test suite calls: a fresh database, named so that a later run can sweep it.
    let url = vqs_postgres::create_test_database(&server()).await.expect("create a test database");
    let name = url.rsplit('/').next().unwrap().to_owned();
    assert!(name.starts_with(&format!("vqs_test_{}", &now.to_string()[..6])), "{name}");
    vqs_postgres::drop_database(&server(), &name).await.unwrap();
}

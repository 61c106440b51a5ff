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

//! The store conformance suite (`vqs-store-tests`) on PostgreSQL: a fresh database per case
//! on `VQS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`), dropped after
//! the case. Fails — never skips — when the server is unreachable. The model test's many
//! short cases share one database, emptied between cases (a fresh one takes a second to
//! migrate).

use std::sync::Arc;

use vqs_store_tests::Fresh;

async fn fresh() -> Fresh {
    let base = std::env::var("VQS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = vqs_postgres::create_test_database(&base)
        .await
        .unwrap_or_else(|e| panic!("{e}: start PostgreSQL, or set VQS_TEST_POSTGRES_URL"));
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let store = vqs_postgres::PgStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let pool = store.pool().clone();
    let teardown = {
        let pool = pool.clone();
        async move {
            pool.close().await;
            vqs_postgres::drop_database(&base, &name).await.expect("drop the test database");
        }
    };
    let reset: vqs_store_tests::Reset = Box::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT quote_ident(tablename) FROM pg_tables \
                 WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'",
            )
            .fetch_all(&pool)
            .await
            .expect("list the tables");
            sqlx::query(&format!("TRUNCATE {} RESTART IDENTITY", tables.join(", ")))
                .execute(&pool)
                .await
                .expect("empty the tables");
        })
    });
    Fresh { store: Arc::new(store), keep: Box::new(()), teardown: Some(Box::pin(teardown)), reset: Some(reset) }
}

vqs_store_tests::conformance!(fresh);

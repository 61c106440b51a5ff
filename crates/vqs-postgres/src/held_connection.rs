//! A connection a hot path keeps for itself (a writer task, the claim). sqlx pings a pooled
//! connection when it is taken from the pool and again when it goes back: three round trips
//! for every one-statement batch. Held, it costs one; after an error it is dropped (the
//! pool tests and closes it) and a fresh one is taken for the next statement, so a server
//! restart is survived as with the pool.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use vqs::store::StoreError;

use crate::rows::db_err;

#[derive(Debug)]
pub(crate) struct HeldConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl HeldConnection {
    pub(crate) fn new(pool: PgPool) -> Self {
        HeldConnection { pool, conn: None }
    }

    /// The held connection, taken from the pool when there is none.
    pub(crate) async fn get(&mut self) -> Result<&mut PgConnection, StoreError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.acquire().await.map_err(db_err)?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// Give the connection back after an error: the next `get` takes a fresh one.
    pub(crate) fn discard(&mut self) {
        self.conn = None;
    }

    /// Keep the connection when `r` is a success, give it back when it is an error.
    pub(crate) fn check<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.discard();
        }
        r
    }
}

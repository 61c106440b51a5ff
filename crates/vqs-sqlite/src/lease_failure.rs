//! Why a lease operation matched no row: the delivery's state, read here; the decision is
//! the core's ([`vqs::store_support::lease_failure`]).

use sqlx::sqlite::SqliteConnection;
use vqs::store::StoreError;

use crate::rows::db_err;

/// Why a lease operation matched no row: gone, already finished, or held by someone else.
pub(crate) async fn lease_failure(
    conn: &mut SqliteConnection,
    message_id: &str,
    group: &str,
    handle: &str,
) -> StoreError {
    let state =
        sqlx::query_scalar::<_, String>("SELECT state FROM deliveries WHERE message_id = ? AND consumer_group = ?")
            .bind(message_id)
            .bind(group)
            .fetch_optional(&mut *conn)
            .await;
    match state {
        Err(e) => db_err(e),
        Ok(state) => vqs::store_support::lease_failure(message_id, group, handle, state.as_deref()),
    }
}

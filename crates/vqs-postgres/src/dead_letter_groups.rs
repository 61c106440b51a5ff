//! Dead letters grouped by topic and error fingerprint (`vqs::store::dead_letter_fingerprint`:
//! the error's first line, at most 200 characters), and a group's ids a page at a time for
//! the facade's bulk replay or discard. Both read `dead_letters`, which retention keeps small.

use sqlx::Row;
use sqlx::postgres::PgPool;
use vqs::store::*;

use crate::rows::db_err;

/// `dead_letter_fingerprint` in SQL: `split_part` and `left` count characters.
const FINGERPRINT: &str = "left(split_part(error, E'\\n', 1), 200)";
const _: () = assert!(DEAD_LETTER_FINGERPRINT_CHARS == 200);

pub(crate) async fn dead_letter_groups(
    pool: &PgPool,
    p: DeadLetterGroupsParams,
) -> Result<Vec<DeadLetterGroup>, StoreError> {
    let sql = format!(
        "SELECT topic, {FINGERPRINT} AS fp, count(*), min(created_at), max(created_at) FROM dead_letters \
         GROUP BY topic, fp ORDER BY count(*) DESC, topic, fp LIMIT $1"
    );
    let rows = sqlx::query(&sql).bind(i64::from(p.limit.max(1))).fetch_all(pool).await.map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| DeadLetterGroup {
            topic: r.get(0),
            error: r.get(1),
            count: r.get::<i64, _>(2).max(0) as u64,
            oldest_at: r.get(3),
            newest_at: r.get(4),
        })
        .collect())
}

pub(crate) async fn dead_letter_group_ids(pool: &PgPool, p: DeadLetterGroupIdsParams) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "SELECT id FROM dead_letters WHERE id > $1 AND id <= $2 AND topic = $3 AND {FINGERPRINT} = $4 \
         ORDER BY id LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(p.after_id)
        .bind(p.through_id)
        .bind(&p.topic)
        .bind(&p.error)
        .bind(i64::from(p.limit.max(1)))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

//! Dead letters grouped by topic and error fingerprint (`vqs::store::dead_letter_fingerprint`:
//! the error's first line, at most 200 characters), and a group's ids a page at a time for
//! the facade's bulk replay or discard. Both read `dead_letters`, which retention keeps small.

use sqlx::{Row, SqlitePool};
use vqs::store::*;

use crate::rows::{db_err, time};

/// `dead_letter_fingerprint` in SQL: `substr` and `instr` count characters on text.
const FINGERPRINT: &str = "substr(substr(error, 1, instr(error || char(10), char(10)) - 1), 1, 200)";
const _: () = assert!(DEAD_LETTER_FINGERPRINT_CHARS == 200);

pub(crate) async fn dead_letter_groups(
    read: &SqlitePool,
    p: DeadLetterGroupsParams,
) -> Result<Vec<DeadLetterGroup>, StoreError> {
    let sql = format!(
        "SELECT topic, {FINGERPRINT} AS fp, count(*), min(created_at), max(created_at) FROM dead_letters \
         GROUP BY topic, fp ORDER BY count(*) DESC, topic, fp LIMIT ?"
    );
    let rows = sqlx::query(&sql).bind(i64::from(p.limit.max(1))).fetch_all(read).await.map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| DeadLetterGroup {
            topic: r.get(0),
            error: r.get(1),
            count: r.get::<i64, _>(2).max(0) as u64,
            oldest_at: time(r.get(3)),
            newest_at: time(r.get(4)),
        })
        .collect())
}

pub(crate) async fn dead_letter_group_ids(
    read: &SqlitePool,
    p: DeadLetterGroupIdsParams,
) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "SELECT id FROM dead_letters WHERE id > ? AND id <= ? AND topic = ? AND {FINGERPRINT} = ? ORDER BY id LIMIT ?"
    );
    let rows = sqlx::query(&sql)
        .bind(p.after_id)
        .bind(p.through_id)
        .bind(&p.topic)
        .bind(&p.error)
        .bind(i64::from(p.limit.max(1)))
        .fetch_all(read)
        .await
        .map_err(db_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

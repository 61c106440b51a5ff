//! Statement texts that repeat. A statement with one placeholder per row has a text per row
//! count, and SQLite prepares each new text afresh: about a quarter of a million instructions
//! for a batch's statement, 7% of the writer's work before these helpers. sqlx keeps prepared
//! statements per connection by text, so row lists and `IN` lists are padded to a power of
//! two: a batch's statements are ones the writer has prepared before, and each is still one
//! statement (splitting a batch into several would cost more than the prepare it saves).

use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite};

/// Rows per multi-row statement at most: a power of two (SQLite allows 32,766 bound
/// parameters; the widest row here binds 12).
pub(crate) const ROWS_PER_STATEMENT: usize = 256;

/// `IN` lists longer than this are bound as they are (a rare size, prepared once).
const MAX_PADDED_LIST: usize = 1024;

/// Push `SELECT <columns> FROM (VALUES (0, …), (1, …), …) WHERE column1 < ?`: one numbered row
/// per item of `rows` (at most [`ROWS_PER_STATEMENT`]), padded to the next power of two with
/// rows that the bound count filters out. A padding row binds `width` NULLs: its text is a
/// real row's, and a large payload is never copied into it. `push_row` binds one item's
/// `width` values; `columns` names them `column2`, `column3`, … (`column1` is the row's
/// number).
pub(crate) fn push_rows<'q, T>(
    q: &mut QueryBuilder<'q, Sqlite>,
    columns: &str,
    width: usize,
    rows: &'q [T],
    mut push_row: impl FnMut(&mut Separated<'_, 'q, Sqlite, &'static str>, &'q T),
) {
    debug_assert!(!rows.is_empty() && rows.len() <= ROWS_PER_STATEMENT);
    let padded = rows.iter().map(Some).chain(std::iter::repeat(None)).take(rows.len().next_power_of_two());
    q.push("SELECT ").push(columns).push(" FROM (");
    q.push_values(padded.enumerate(), |mut b, (i, row)| {
        b.push(i);
        match row {
            Some(row) => push_row(&mut b, row),
            None => {
                for _ in 0..width {
                    b.push_bind(None::<i64>);
                }
            }
        }
    });
    q.push(") WHERE column1 < ").push_bind(rows.len() as i64);
}

/// Push `(?, ?, …)` binding `ids`, padded with the last id to the next power of two (set
/// membership: a repeated id matches the same rows). An empty list pushes `()`.
pub(crate) fn push_in_list<'q, S: AsRef<str> + 'q>(q: &mut QueryBuilder<'q, Sqlite>, ids: &'q [S]) {
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(id.as_ref());
    }
    if let Some(last) = ids.last()
        && ids.len() <= MAX_PADDED_LIST
    {
        for _ in ids.len()..ids.len().next_power_of_two() {
            sep.push_bind(last.as_ref());
        }
    }
    q.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Row};

    fn rows_sql(n: usize) -> String {
        let rows: Vec<i64> = (0..n as i64).collect();
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("");
        push_rows(&mut q, "column2", 1, &rows, |b, r| {
            b.push_bind(*r);
        });
        q.into_sql()
    }

    #[test]
    fn row_lists_of_nearby_lengths_share_a_text() {
        assert_eq!(rows_sql(5), rows_sql(8));
        assert_eq!(rows_sql(200), rows_sql(ROWS_PER_STATEMENT));
        assert_ne!(rows_sql(8), rows_sql(9));
        assert_eq!(rows_sql(3), "SELECT column2 FROM (VALUES (0, ?), (1, ?), (2, ?), (3, ?)) WHERE column1 < ?");
    }

    #[tokio::test]
    async fn padded_rows_and_lists_select_each_item_once() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)").execute(&mut conn).await.unwrap();
        for n in [1usize, 3, 5, 8, 100] {
            sqlx::query("DELETE FROM t").execute(&mut conn).await.unwrap();
            let items: Vec<(String, i64)> = (0..n).map(|i| (format!("id{i}"), i as i64)).collect();
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO t (id, n) ");
            push_rows(&mut q, "column2, column3", 2, &items, |b, (id, n)| {
                b.push_bind(id.as_str()).push_bind(*n);
            });
            let inserted = q.build().execute(&mut conn).await.unwrap().rows_affected();
            assert_eq!(inserted, n as u64, "n = {n}");

            let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE t SET n = n + 1 WHERE id IN ");
            push_in_list(&mut q, &ids);
            let updated = q.build().execute(&mut conn).await.unwrap().rows_affected();
            assert_eq!(updated, n as u64, "n = {n}");
            let sum: i64 = sqlx::query("SELECT SUM(n) FROM t").fetch_one(&mut conn).await.unwrap().get(0);
            assert_eq!(sum, (0..n as i64).map(|i| i + 1).sum::<i64>(), "n = {n}");
        }
    }

    #[test]
    fn in_lists_are_padded_to_a_power_of_two_with_the_last_id() {
        let sql = |ids: &[&str]| {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("x IN ");
            push_in_list(&mut q, ids);
            q.into_sql()
        };
        assert_eq!(sql(&[]), "x IN ()");
        assert_eq!(sql(&["a"]), "x IN (?)");
        assert_eq!(sql(&["a", "b", "c"]), "x IN (?, ?, ?, ?)");
        assert_eq!(sql(&["a"; 5]), sql(&["b"; 8]));
        let long = vec!["a"; MAX_PADDED_LIST + 1];
        assert_eq!(sql(&long).matches('?').count(), MAX_PADDED_LIST + 1);
    }
}

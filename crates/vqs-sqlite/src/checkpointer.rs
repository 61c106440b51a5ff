//! WAL checkpoints off the writer's path. SQLite's own automatic checkpoint runs inside the
//! commit that takes the WAL past 1,000 pages: that commit copies the pages back into the
//! database file and syncs it (`synchronous = NORMAL` syncs at checkpoints only) while every
//! write queued behind it waits — the tail of the enqueue→start latency. Here that automatic
//! checkpoint is off on every connection the store opens but the writer's, which keeps only
//! a backstop (below), and a task of the store's own runs a `PASSIVE` checkpoint on a connection of its
//! own every [`INTERVAL`]: it copies what no reader still needs, never waits for the writer
//! or the readers, and the writer starts the WAL over once all of it has been copied, as
//! before. The task ends with the store (its last handle dropped); its failures are logged.
//!
//! Under a stream of writes with no pause (a bulk load), a `PASSIVE` checkpoint never gets
//! to the end of the WAL — the writer appends while it copies — so the writer never starts
//! the WAL over and it grows without end: 483 MB after a million messages were loaded, and
//! the processing that followed ran at about half speed (every read searches the WAL's index;
//! BENCHMARKS.md). So the writer keeps SQLite's automatic checkpoint, at
//! [`WRITER_BACKSTOP_PAGES`] rather than 1,000: it runs only when the task has fallen that
//! far behind, inside a commit (no append meanwhile, so it reaches the end), copies what the
//! task has not yet copied, and the WAL starts over.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinHandle;

/// How often the WAL is checkpointed. A pass with nothing to copy costs a few system calls.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's automatic checkpoint (`wal_autocheckpoint`): WAL pages (4 KiB) past which a
/// commit checkpoints, about 40 MiB — reached only when the task cannot keep up.
pub(crate) const WRITER_BACKSTOP_PAGES: u32 = 10_000;

/// The checkpoint task; aborted when dropped (with the store's last handle).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    task: JoinHandle<bool>,
}

impl Checkpointer {
    pub(crate) fn start(options: SqliteConnectOptions) -> Checkpointer {
        Checkpointer { task: tokio::spawn(vqs::log_panic("sqlite checkpointer", run(options))) }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(options: SqliteConnectOptions) {
    let mut conn: Option<SqliteConnection> = None;
    // Logged when it starts failing and when it recovers, not at every pass.
    let mut failing = false;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = async {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(options.connect().await?),
            };
            checkpoint(c).await
        }
        .await;
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("SQLite WAL checkpoints work again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::error!(
                        error = %e,
                        "SQLite WAL checkpoint failed; the WAL file grows until one succeeds (retried every {} ms)",
                        INTERVAL.as_millis()
                    );
                }
                failing = true;
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
            }
        }
    }
}

async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // (busy, WAL frames, frames copied): a busy or partial pass is normal under load (a
    // reader still needs the newest frames); the next pass copies the rest.
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(conn).await.map(drop)
}

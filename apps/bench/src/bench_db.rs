//! A fresh database per measurement (the peers' "reset"): a new SQLite file, or a new
//! `vqs_bench_*` PostgreSQL database — migrated, with the probe consumer subscribed — and
//! gone afterwards. Every database made is remembered, so that even a failed run drops them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use vqs::{Clock, ConsumerConfig, Queue};

use crate::args::Backend;
use crate::in_process_worker;

/// Where the measurements' databases are made.
#[derive(Debug, Clone)]
pub struct Target {
    kind: Kind,
    made: Arc<Mutex<BTreeSet<String>>>,
}

#[derive(Debug, Clone)]
enum Kind {
    Sqlite { dir: PathBuf },
    Postgres { server: String },
}

impl Target {
    pub fn sqlite(dir: PathBuf) -> Target {
        Target { kind: Kind::Sqlite { dir }, made: Arc::default() }
    }

    pub fn postgres(server: &str) -> Target {
        Target { kind: Kind::Postgres { server: server.trim_end_matches('/').to_owned() }, made: Arc::default() }
    }

    pub fn backend(&self) -> Backend {
        match self.kind {
            Kind::Sqlite { .. } => Backend::Sqlite,
            Kind::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The `system` field of the output lines.
    pub fn system(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite { .. } => "vqs-sqlite",
            Kind::Postgres { .. } => "vqs-postgres",
        }
    }

    /// The PostgreSQL server URL (no database), if this is PostgreSQL.
    pub fn server(&self) -> Option<&str> {
        match &self.kind {
            Kind::Postgres { server } => Some(server),
            Kind::Sqlite { .. } => None,
        }
    }

    /// A new, empty database with the schema and the probe consumer's subscription.
    pub async fn fresh(&self) -> Result<BenchDb> {
        let name = format!("vqs_bench_{}", uuid::Uuid::new_v4().simple());
        let url = match &self.kind {
            Kind::Sqlite { dir } => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            Kind::Postgres { server } => vqs_postgres::create_database(server, &name)
                .await
                .with_context(|| format!("creating database {name} (is PostgreSQL running at {server}?)"))?,
        };
        self.made.lock().expect("lock").insert(name.clone());
        let db = BenchDb { target: self.clone(), name, url };
        // Install the schema and subscribe the consumer group, as a deployment has them
        // before its first publish.
        db.open().await?.close().await;
        Ok(db)
    }

    fn forget(&self, name: &str) {
        self.made.lock().expect("lock").remove(name);
    }

    async fn remove(&self, name: &str) -> Result<()> {
        match &self.kind {
            Kind::Sqlite { dir } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.join(format!("{name}.db{suffix}")));
                }
            }
            Kind::Postgres { server } => {
                vqs_postgres::drop_database(server, name).await.with_context(|| format!("dropping database {name}"))?
            }
        }
        self.forget(name);
        Ok(())
    }

    /// Drop every database this target made that is still there.
    pub async fn drop_all(&self) {
        let names: Vec<String> = self.made.lock().expect("lock").iter().cloned().collect();
        for name in names {
            if let Err(e) = self.remove(&name).await {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// One measurement's database.
#[derive(Debug)]
pub struct BenchDb {
    target: Target,
    name: String,
    url: String,
}

impl BenchDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same database reached through another host and port (the round-trip counter's
    /// proxy): `postgres://user@127.0.0.1:<port>/<db>?sslmode=disable`.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("postgres", &self.url));
        let (user, _) = rest.rsplit_once('@').map(|(u, h)| (format!("{u}@"), h)).unwrap_or_default();
        format!("{scheme}://{user}{addr}/{}?sslmode=disable", self.name)
    }

    /// Open the database as a serving process does: migrations, LISTEN/NOTIFY wake-ups on
    /// PostgreSQL, and the probe consumer's subscription.
    pub async fn open(&self) -> Result<OpenQueue> {
        OpenQueue::open(&self.url).await
    }

    /// [`BenchDb::open`] with the probe consumer registered at this group concurrency.
    pub async fn open_grouped(&self, group_concurrency: Option<u32>) -> Result<OpenQueue> {
        OpenQueue::open_grouped(&self.url, group_concurrency).await
    }

    /// Drop the database (or delete the file).
    pub async fn drop(self) -> Result<()> {
        self.target.remove(&self.name).await
    }
}

/// A queue over one database, with what it takes to close it cleanly (so that no pool or
/// LISTEN connection outlives the measurement).
pub struct OpenQueue {
    pub queue: Queue,
    store: Store,
}

enum Store {
    Sqlite(Box<vqs_sqlite::SqliteStore>),
    Postgres(vqs_postgres::PgStore, JoinHandle<()>),
}

impl OpenQueue {
    /// What `web::runtime::open_queue` does, keeping the handles to close it again.
    pub async fn open(url: &str) -> Result<OpenQueue> {
        OpenQueue::open_grouped(url, None).await
    }

    /// [`OpenQueue::open`], the probe consumer registered at `group_concurrency`.
    pub async fn open_grouped(url: &str, group_concurrency: Option<u32>) -> Result<OpenQueue> {
        let open = if url.starts_with("sqlite:") {
            let store = vqs_sqlite::SqliteStore::open(url).await?;
            store.migrate().await?;
            OpenQueue {
                queue: Queue::new(Arc::new(store.clone()), Clock::system()),
                store: Store::Sqlite(Box::new(store)),
            }
        } else {
            let store = vqs_postgres::PgStore::connect(url).await?;
            store.migrate().await?;
            let queue = Queue::new(Arc::new(store.clone()), Clock::system());
            let wake = store.forward_wakeups(queue.clone());
            OpenQueue { queue, store: Store::Postgres(store, wake) }
        };
        let consumers: Vec<ConsumerConfig> = in_process_worker::probe_vercel(1)?
            .queue_triggers
            .iter()
            .map(|t| ConsumerConfig { group_concurrency, ..ConsumerConfig::from(t) })
            .collect();
        vqs::register_consumers(&open.queue, &consumers).await.context("subscribing the probe consumer")?;
        Ok(open)
    }

    /// Refresh the planner's statistics (PostgreSQL; nothing to do on SQLite) — untimed, as
    /// the peers `ANALYZE` their job table after the bulk enqueue.
    pub async fn analyze(&self) -> Result<()> {
        if let Store::Postgres(store, _) = &self.store {
            store.analyze().await?;
        }
        Ok(())
    }

    pub async fn close(self) {
        match self.store {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store, wake) => {
                wake.abort();
                let _ = wake.await;
                store.pool().close().await;
            }
        }
    }
}

//! Database cost per job: statements executed (counted from sqlx's own statement events,
//! both backends), and on PostgreSQL the round trips on the wire (a counting proxy). Three
//! phases, counted apart: one-at-a-time enqueue, bulk enqueue, and processing at
//! concurrency C through the normal delivery path. The counts include a run's fixed costs
//! (the worker's start-up: migration check, subscription, one maintenance pass; the
//! dispatcher's last empty claim), spread over the jobs.

use std::time::Duration;

use anyhow::Result;
use jobs::{Probe, ProbeParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bench_db::{OpenQueue, Target};
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, r3};
use crate::pg_wire_counter::{Wire, WireCounter};
use crate::statement_counter::{self, Statements};
use crate::{bulk, store_reads};

#[derive(Clone, Copy)]
struct Snap(Statements, Option<Wire>);

fn snap(wire: &Option<WireCounter>) -> Snap {
    Snap(statement_counter::snapshot(), wire.as_ref().map(WireCounter::snapshot))
}

fn per_job(from: Snap, to: Snap, jobs: usize) -> Value {
    let k = jobs.max(1) as f64;
    let s = to.0 - from.0;
    let mut v = json!({
        "jobs": jobs,
        "statements": r3(s.all as f64 / k),
        "explicit_commits": r3(s.commits as f64 / k),
    });
    if let (Some(a), Some(b)) = (from.1, to.1) {
        let w = b - a;
        v["round_trips"] = r3(w.round_trips as f64 / k);
        v["wire_statements"] = r3(w.statements as f64 / k);
        v["prepares"] = r3(w.parses as f64 / k);
        v["pings"] = r3(w.pings as f64 / k);
        v["connections"] = json!(w.connections);
    }
    v
}

/// `host:port` of a `postgres://user@host:port` URL.
fn host_port(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap_or(host);
    if host.contains(':') { host.to_owned() } else { format!("{host}:5432") }
}

pub async fn round_trips(target: &Target, out: &Emitter, n: usize, c: u32) -> Result<()> {
    log(&format!("{}: database cost per job n={n} c={c}", out.system()));
    let db = target.fresh().await?;
    let wire = match target.server() {
        Some(server) => Some(WireCounter::start(host_port(server)).await?),
        None => None,
    };
    let url = wire.as_ref().map_or_else(|| db.url().to_owned(), |w| db.url_via(w.addr()));
    let producer = OpenQueue::open(&url).await?;
    let job = producer.queue.job(Probe);
    // Warm-up (not counted): connections open, statements prepared.
    for _ in 0..50 {
        job.perform_later(ProbeParams::default()).await?;
    }
    let single_n = n.min(500);
    let s0 = snap(&wire);
    for _ in 0..single_n {
        job.perform_later(ProbeParams::default()).await?;
    }
    let s1 = snap(&wire);
    bulk::enqueue(&job, n).await?;
    let s2 = snap(&wire);
    producer.analyze().await?;
    producer.close().await;

    let total = 50 + single_n + n;
    let s3 = snap(&wire);
    let consumer = OpenQueue::open(&url).await?;
    let worker = InProcessWorker::start(&consumer.queue, c).await?;
    let finished = worker.completions.wait_for(total, Instant::now() + Duration::from_secs(300)).await;
    let s4 = snap(&wire);
    worker.stop().await;
    let done = store_reads::succeeded(&consumer.queue).await?;
    consumer.close().await;
    db.drop().await?;
    anyhow::ensure!(finished && done >= total, "the round-trip run did not finish ({done} of {total} jobs)");
    out.emit(
        "roundtrips",
        json!({
            "n": n,
            "concurrency": c,
            "timed_out": false,
            "enqueue_single": per_job(s0, s1, single_n),
            "enqueue_bulk": per_job(s1, s2, n),
            "process": per_job(s3, s4, total),
            "method": if wire.is_some() {
                "statements: sqlx statement events; round trips: frontend Sync+Query messages through a counting proxy"
            } else {
                "statements: sqlx statement events (SQLite runs in process: no round trips)"
            },
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_port_of_server_urls() {
        assert_eq!(super::host_port("postgres://postgres@127.0.0.1:5432"), "127.0.0.1:5432");
        assert_eq!(super::host_port("postgres://u:p@db/"), "db:5432");
    }
}

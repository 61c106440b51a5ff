//! Group concurrency under load (SPEC.md, "Flow control"; docs/flow-control.md): the flow
//! workload (N jobs over 1,000 groups at group concurrency 1) and the hostile one (one group
//! with a huge backlog beside 100 small groups), each printed with the plain throughput of
//! the same jobs ungrouped, measured in the same run.

use std::time::Duration;

use anyhow::Result;
use jobs::ProbeParams;
use serde_json::json;
use tokio::time::Instant;
use vqs::SendOpts;

use crate::bench_db::Target;
use crate::in_process_worker::InProcessWorker;
use crate::line::{Emitter, log, r1, r3};
use crate::store_reads;

/// One message of a run: its group and its params.
type Job = (Option<String>, ProbeParams);

/// Enqueue `backlog` (untimed), then time a worker at concurrency `c` and group concurrency
/// `gc` until `measured` probes succeeded. Returns (process_s, done).
async fn run(
    target: &Target,
    backlog: Vec<Job>,
    measured: usize,
    c: u32,
    gc: Option<u32>,
    timeout: Duration,
) -> Result<(f64, usize)> {
    let db = target.fresh().await?;
    let producer = db.open_grouped(gc).await?;
    for chunk in backlog.chunks(crate::bulk::CHUNK) {
        let messages = chunk.iter().map(|(group, params)| {
            let opts = SendOpts { group: group.clone(), ..SendOpts::default() };
            (serde_json::to_vec(params).expect("params"), opts)
        });
        producer.queue.send_many("probe", messages).await?;
    }
    producer.analyze().await?;
    producer.close().await;
    let p0 = Instant::now();
    let deadline = p0 + timeout;
    let consumer = db.open_grouped(gc).await?;
    let worker = InProcessWorker::start_grouped(&consumer.queue, c, gc).await?;
    worker.completions.wait_for(measured, deadline).await;
    let done = store_reads::wait_succeeded(&consumer.queue, measured, deadline, Duration::from_millis(2)).await?;
    let process_s = p0.elapsed().as_secs_f64();
    worker.stop().await;
    consumer.close().await;
    db.drop().await?;
    Ok((process_s, done))
}

fn probes(n: usize, group: impl Fn(usize) -> Option<String>) -> Vec<Job> {
    (0..n).map(|i| (group(i), ProbeParams::default())).collect()
}

/// `n` jobs over `groups` groups (round robin) at group concurrency 1, against the same `n`
/// jobs ungrouped without group concurrency.
pub async fn flow(target: &Target, out: &Emitter, n: usize, groups: usize, c: u32, timeout: Duration) -> Result<()> {
    log(&format!("{}: flow n={n} groups={groups} c={c}", out.system()));
    let (plain_s, plain_done) = run(target, probes(n, |_| None), n, c, None, timeout).await?;
    let groups = groups.max(1);
    let grouped = probes(n, |i| Some(format!("g{}", i % groups)));
    let (flow_s, flow_done) = run(target, grouped, n, c, Some(1), timeout).await?;
    let (plain, flow) = (plain_done as f64 / plain_s, flow_done as f64 / flow_s);
    out.emit(
        "flow",
        json!({
            "n": n, "groups": groups, "group_concurrency": 1, "concurrency": c,
            "process_per_s": r1(flow), "plain_process_per_s": r1(plain), "of_plain": r3(flow / plain),
            "process_s": r3(flow_s), "plain_process_s": r3(plain_s),
            "timed_out": flow_done < n || plain_done < n,
        }),
    );
    Ok(())
}

/// 100 small groups of `n` jobs in all, behind one group of `big` waiting jobs (each sleeping
/// 1 s, at group concurrency 1: the big group runs one at a time throughout) — against the
/// `n` small jobs alone, ungrouped. A claim that scanned the big group's backlog would pay
/// for it on every claim; the ready set never reads it.
pub async fn hostile(target: &Target, out: &Emitter, n: usize, big: usize, c: u32, timeout: Duration) -> Result<()> {
    log(&format!("{}: hostile n={n} big={big} c={c}", out.system()));
    let (plain_s, plain_done) = run(target, probes(n, |_| None), n, c, None, timeout).await?;
    // The big group first: its backlog is the oldest due work.
    let slow = ProbeParams { sleep_ms: Some(1000), ..ProbeParams::default() };
    let mut backlog: Vec<Job> = (0..big).map(|_| (Some("big".to_owned()), slow.clone())).collect();
    backlog.extend(probes(n, |i| Some(format!("small{}", i % 100))));
    let t0 = Instant::now();
    let (hostile_s, hostile_done) = run(target, backlog, n, c, Some(1), timeout).await?;
    let total_s = t0.elapsed().as_secs_f64();
    // `done` counts the big group's few completions too (one a second at most): the small
    // groups' rate is overstated by at most process_s jobs.
    let (plain, hostile) = (plain_done as f64 / plain_s, hostile_done as f64 / hostile_s);
    out.emit(
        "hostile",
        json!({
            "n": n, "big_group_waiting": big, "small_groups": 100, "group_concurrency": 1, "concurrency": c,
            "process_per_s": r1(hostile), "plain_process_per_s": r1(plain), "of_plain": r3(hostile / plain),
            "process_s": r3(hostile_s), "plain_process_s": r3(plain_s), "with_load_s": r3(total_s),
            "timed_out": hostile_done < n || plain_done < n,
        }),
    );
    Ok(())
}

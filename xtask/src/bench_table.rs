//! The table of `cargo xtask bench`: every system's figures from the JSON lines of one run
//! (the peers' and vqs's share one format), vqs's ratio to each peer (throughput: vqs ÷
//! peer; latency: peer ÷ vqs, so > 1 is better for vqs in both, as the peers'
//! `summarize.js` does), the issue's goals, and vqs's extra figures.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;

use serde_json::Value;

/// What the table is made of.
pub struct Context {
    pub files: Vec<PathBuf>,
    pub meta: Option<Value>,
    pub vqs_commit: String,
    pub load_at_start: String,
    pub load_at_end: String,
    pub fsync_at_start: String,
    pub fsync_at_end: String,
    pub wall_s: f64,
    pub quick: bool,
    /// What the run left out, and why.
    pub notes: Vec<String>,
}

const PEERS: [&str; 5] = ["bullmq", "graphile-worker", "graphile-worker-tuned", "pg-boss", "pg-boss-tuned"];
const VQS: [&str; 2] = ["vqs-sqlite", "vqs-postgres"];
const ORDER: [&str; 8] = [
    "bullmq",
    "graphile-worker",
    "graphile-worker-tuned",
    "pg-boss",
    "pg-boss-tuned",
    "vqs-sqlite",
    "vqs-sqlite-inproc",
    "vqs-postgres",
];

struct Rows(Vec<Value>);

fn read(files: &[PathBuf]) -> Rows {
    let mut rows = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && v.get("system").is_some()
                && v.get("workload").is_some()
            {
                rows.push(v);
            }
        }
    }
    Rows(rows)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    Some(if xs.len() % 2 == 1 { xs[m] } else { (xs[m - 1] + xs[m]) / 2.0 })
}

/// A cell: the median of `field` over the matching rows, and whether any of them timed out.
#[derive(Clone, Copy)]
struct Cell {
    value: Option<f64>,
    timed_out: bool,
}

impl Rows {
    fn cell(&self, pick: impl Fn(&Value) -> bool, field: &str) -> Cell {
        let rows: Vec<&Value> = self.0.iter().filter(|r| pick(r)).collect();
        Cell {
            value: median(rows.iter().filter_map(|r| n(r, field)).collect()),
            timed_out: rows.iter().any(|r| r.get("timed_out").and_then(Value::as_bool) == Some(true)),
        }
    }

    fn systems(&self) -> Vec<String> {
        let seen: BTreeSet<String> = self.0.iter().map(|r| s(r, "system").to_owned()).collect();
        let mut out: Vec<String> = ORDER.iter().filter(|s| seen.contains(**s)).map(|s| s.to_string()).collect();
        out.extend(seen.into_iter().filter(|s| !ORDER.contains(&s.as_str())));
        out
    }

    fn values(&self, workload: &str, mode: &str, field: &str) -> Vec<u64> {
        let set: BTreeSet<u64> = self
            .0
            .iter()
            .filter(|r| s(r, "workload") == workload && s(r, "enqueue_mode") == mode)
            .filter_map(|r| r.get(field).and_then(Value::as_u64))
            .collect();
        set.into_iter().collect()
    }

    fn bulk(&self, sys: &str, c: Option<u64>, field: &str) -> Cell {
        self.cell(
            |r| {
                s(r, "system") == sys
                    && s(r, "workload") == "throughput"
                    && s(r, "enqueue_mode") == "bulk"
                    && c.is_none_or(|c| r.get("concurrency").and_then(Value::as_u64) == Some(c))
            },
            field,
        )
    }

    fn single(&self, sys: &str, p: u64) -> Cell {
        self.cell(
            |r| {
                s(r, "system") == sys
                    && s(r, "enqueue_mode") == "single"
                    && r.get("enqueue_inflight").and_then(Value::as_u64) == Some(p)
            },
            "enqueue_per_s",
        )
    }

    fn latency(&self, sys: &str, field: &str) -> Cell {
        self.cell(|r| s(r, "system") == sys && s(r, "workload") == "latency", field)
    }

    fn extra(&self, workload: &str) -> Vec<&Value> {
        self.0.iter().filter(|r| s(r, "workload") == workload).collect()
    }

    /// `sys`'s scaling measurements, one per backlog, smallest first: the medians over its
    /// rounds (`--scaling-rounds`), and each round's figure.
    fn scaling(&self, sys: &str) -> Vec<Scaling> {
        let runs: Vec<&Value> = self.extra("scaling").into_iter().filter(|r| s(r, "system") == sys).collect();
        let target = |r: &Value| r.get("backlog_target").or(r.get("backlog")).and_then(Value::as_u64).unwrap_or(0);
        let targets: BTreeSet<u64> = runs.iter().map(|r| target(r)).collect();
        targets
            .into_iter()
            .map(|t| {
                let of: Vec<&Value> = runs.iter().copied().filter(|r| target(r) == t).collect();
                let med = |k: &str| median(of.iter().filter_map(|r| n(r, k)).collect());
                Scaling {
                    system: sys.to_owned(),
                    backlog: of.iter().filter_map(|r| r.get("backlog").and_then(Value::as_u64)).min().unwrap_or(t),
                    target: t,
                    capped: of.iter().any(|r| r.get("load_capped").and_then(Value::as_bool) == Some(true)),
                    load_s: med("load_s"),
                    enqueue_per_s: med("enqueue_per_s"),
                    n: med("n"),
                    concurrency: med("concurrency"),
                    process_per_s: med("process_per_s"),
                    warmup: med("warmup"),
                    start_per_s: med("start_per_s"),
                    rounds: of
                        .iter()
                        .map(|r| Cell { value: n(r, "process_per_s"), timed_out: r["timed_out"] == true })
                        .collect(),
                }
            })
            .collect()
    }
}

/// One backlog of the scaling workload, over its rounds.
struct Scaling {
    system: String,
    /// Waiting when measured (the smallest reached, when a load stopped at its time cap).
    backlog: u64,
    /// The backlog asked for.
    target: u64,
    capped: bool,
    load_s: Option<f64>,
    enqueue_per_s: Option<f64>,
    n: Option<f64>,
    concurrency: Option<f64>,
    /// The median over the rounds.
    process_per_s: Option<f64>,
    /// Jobs processed before the timed N (`--scaling-warmup`), and their rate, the worker's
    /// start included (medians).
    warmup: Option<f64>,
    start_per_s: Option<f64>,
    rounds: Vec<Cell>,
}

/// 12,345 for rates, 1.23 for milliseconds.
fn num(x: f64, decimals: usize) -> String {
    if decimals > 0 {
        return format!("{x:.decimals$}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn show(c: Cell, decimals: usize) -> String {
    match c.value {
        None => "–".into(),
        Some(v) => format!("{}{}", num(v, decimals), if c.timed_out { " †" } else { "" }),
    }
}

fn ratio(x: Option<f64>) -> String {
    match x {
        Some(r) if r.is_finite() => format!("{r:.2}×"),
        _ => "–".into(),
    }
}

fn div(a: Cell, b: Cell) -> Option<f64> {
    Some(a.value? / b.value?)
}

pub fn render(ctx: &Context) -> String {
    let rows = read(&ctx.files);
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "## vqs vs peers — one run on this machine{}\n",
        if ctx.quick { " (--quick: small N)" } else { "" }
    );
    let rounds = ctx.meta.as_ref().and_then(|m| m.get("rounds")).and_then(Value::as_u64);
    let _ = writeln!(
        w,
        "load average {} at start, {} at end; whole run {:.0} s{}; vqs {}. Files: {}.\n",
        ctx.load_at_start,
        ctx.load_at_end,
        ctx.wall_s,
        rounds.map(|r| format!("; peers' rounds: {r} (median per cell)")).unwrap_or_default(),
        ctx.vqs_commit,
        ctx.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        w,
        "A durable 8 kB write (write + fdatasync, what each PostgreSQL commit waits for): {} at start, {} at \
         end (about 0.2 ms on a quiet machine of this kind).\n",
        ctx.fsync_at_start, ctx.fsync_at_end
    );
    if rows.0.is_empty() {
        let _ = writeln!(w, "no results were recorded");
        return o;
    }
    let cs = rows.values("throughput", "bulk", "concurrency");
    let ps = rows.values("throughput", "single", "enqueue_inflight");
    let systems = rows.systems();

    // ---- figures
    let _ = writeln!(w, "### Figures (jobs/s; latency in ms, enqueue → handler start)\n");
    let mut head = vec!["system".to_owned(), "bulk enqueue/s".into()];
    head.extend(cs.iter().map(|c| format!("process/s C={c}")));
    head.extend(ps.iter().map(|p| format!("single enqueue/s ×{p}")));
    head.extend(["p50".into(), "p95".into(), "p99".into()]);
    table_head(w, &head);
    for sys in &systems {
        if !rows.0.iter().any(|r| s(r, "system") == sys && matches!(s(r, "workload"), "throughput" | "latency")) {
            continue;
        }
        let mut cells = vec![sys.clone(), show(rows.bulk(sys, None, "enqueue_per_s"), 0)];
        cells.extend(cs.iter().map(|&c| show(rows.bulk(sys, Some(c), "process_per_s"), 0)));
        cells.extend(ps.iter().map(|&p| show(rows.single(sys, p), 0)));
        for f in ["p50_ms", "p95_ms", "p99_ms"] {
            cells.push(show(rows.latency(sys, f), 2));
        }
        table_row(w, &cells);
    }
    let _ = writeln!(
        w,
        "\n† timed out (hit its time cap; the figure is what was done by then). vqs-sqlite-inproc: the \
         latency producer in the worker's process (SQLite's one-process deployment); the other vqs \
         latency rows use a separate worker process, as the peers do.\n"
    );

    // ---- ratios
    let vqs: Vec<&str> = VQS.iter().copied().filter(|v| systems.iter().any(|s| s == v)).collect();
    let peers: Vec<&str> = PEERS.iter().copied().filter(|p| systems.iter().any(|s| s == p)).collect();
    if !vqs.is_empty() && !peers.is_empty() {
        let _ = writeln!(
            w,
            "### vqs's ratio to each peer (throughput: vqs ÷ peer; latency: peer ÷ vqs; > 1 = vqs better)\n"
        );
        let mut head = vec!["vqs".to_owned(), "peer".into(), "bulk enqueue".into()];
        head.extend(cs.iter().map(|c| format!("process C={c}")));
        head.extend(ps.iter().map(|p| format!("single ×{p}")));
        head.extend(["p50".into(), "p99".into()]);
        table_head(w, &head);
        for v in &vqs {
            for p in &peers {
                let mut cells = vec![v.to_string(), p.to_string()];
                cells.push(ratio(div(rows.bulk(v, None, "enqueue_per_s"), rows.bulk(p, None, "enqueue_per_s"))));
                cells.extend(cs.iter().map(|&c| {
                    ratio(div(rows.bulk(v, Some(c), "process_per_s"), rows.bulk(p, Some(c), "process_per_s")))
                }));
                cells.extend(ps.iter().map(|&q| ratio(div(rows.single(v, q), rows.single(p, q)))));
                for f in ["p50_ms", "p99_ms"] {
                    cells.push(ratio(div(rows.latency(p, f), rows.latency(v, f))));
                }
                table_row(w, &cells);
            }
        }
        let _ = writeln!(w);
    }

    goals(w, &rows);
    extras(w, &rows);
    for note in &ctx.notes {
        let _ = writeln!(w, "Note: {note}.\n");
    }
    versions(w, ctx);
    o
}

fn table_head(w: &mut String, head: &[String]) {
    let _ = writeln!(w, "| {} |", head.join(" | "));
    let _ = writeln!(w, "|{}", "---|".repeat(head.len()));
}

fn table_row(w: &mut String, cells: &[String]) {
    let _ = writeln!(w, "| {} |", cells.join(" | "));
}

/// The issue's goals, each met or missed by how much (reported, never enforced).
fn goals(w: &mut String, rows: &Rows) {
    let mut lines = Vec::new();
    let at_least = |name: &str, got: Option<f64>, goal: f64, unit: &str| match got {
        None => None,
        Some(x) if x >= goal => Some(format!("- {name}: {} — met", fmt_unit(x, unit))),
        Some(x) => Some(format!("- {name}: {} — missed, short by {:.0}%", fmt_unit(x, unit), 100.0 * (1.0 - x / goal))),
    };
    let at_most = |name: &str, got: Option<f64>, goal: f64| match got {
        None => None,
        Some(x) if x <= goal => Some(format!("- {name}: {x:.2} ms — met")),
        Some(x) => Some(format!("- {name}: {x:.2} ms — missed, {:.1}× the goal", x / goal)),
    };
    let pg50 = rows.bulk("vqs-postgres", Some(50), "process_per_s");
    lines.extend(at_least(
        "PostgreSQL processing at C=50 ≥ 1× graphile-worker-tuned",
        div(pg50, rows.bulk("graphile-worker-tuned", Some(50), "process_per_s")),
        1.0,
        "×",
    ));
    lines.extend(at_least(
        "PostgreSQL processing at C=50 ≥ 2× BullMQ",
        div(pg50, rows.bulk("bullmq", Some(50), "process_per_s")),
        2.0,
        "×",
    ));
    lines.extend(at_most("PostgreSQL enqueue→start p50 ≤ 1 ms", rows.latency("vqs-postgres", "p50_ms").value, 1.0));
    lines.extend(at_most("PostgreSQL enqueue→start p99 ≤ 5 ms", rows.latency("vqs-postgres", "p99_ms").value, 5.0));
    let sqlite_best = rows
        .0
        .iter()
        .filter(|r| s(r, "system") == "vqs-sqlite" && s(r, "enqueue_mode") == "bulk")
        .filter_map(|r| n(r, "process_per_s"))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    lines.extend(at_least("SQLite ≥ 10,000 tracked jobs/s processed (best C)", sqlite_best, 10_000.0, "jobs/s"));
    for sys in VQS {
        let scaling = rows.scaling(sys);
        if let (Some(first), Some(last)) = (scaling.first(), scaling.last())
            && scaling.len() > 1
            && let (Some(a), Some(b)) = (first.process_per_s, last.process_per_s)
        {
            let change = 100.0 * (b / a - 1.0);
            let verdict = if change.abs() <= 10.0 { "met" } else { "missed" };
            let rounds = first.rounds.len().min(last.rounds.len());
            lines.push(format!(
                "- {sys}: flat from {} to {} waiting (within 10%): {} → {} jobs/s ({change:+.0}%{}) — {verdict}{}",
                num(first.backlog as f64, 0),
                num(last.backlog as f64, 0),
                num(a, 0),
                num(b, 0),
                if rounds > 1 { format!(", medians of {rounds} rounds") } else { String::new() },
                if last.capped {
                    format!(" (loading stopped at its time cap short of {})", num(last.target as f64, 0))
                } else {
                    String::new()
                }
            ));
        }
    }
    // Several worker processes on one database: the most processes measured against one.
    let procs = rows.extra("processes");
    let rate = |k: u64| {
        median(
            procs
                .iter()
                .filter(|r| r.get("processes").and_then(Value::as_u64) == Some(k))
                .filter_map(|r| n(r, "window_per_s").or_else(|| n(r, "process_per_s")))
                .collect(),
        )
    };
    let most = procs.iter().filter_map(|r| r.get("processes").and_then(Value::as_u64)).max();
    if let (Some(k), Some(one)) = (most.filter(|&k| k > 1), rate(1))
        && let Some(many) = rate(k)
    {
        let name = format!("PostgreSQL: {k} worker processes on one database at least as fast as one");
        lines.extend(at_least(&name, Some(many / one), 1.0, "×"));
    }
    // Message groups: each grouped run against the same jobs ungrouped, in the same process.
    let count = |r: &Value, k: &str| num(n(r, k).unwrap_or(0.0), 0);
    for r in rows.extra("flow") {
        let name = format!(
            "{}: the flow workload ({} groups, group concurrency 1) within 10% of the same jobs ungrouped",
            s(r, "system"),
            count(r, "groups")
        );
        lines.extend(at_least(&name, n(r, "of_plain"), 0.9, "×"));
    }
    for r in rows.extra("hostile") {
        let name = format!(
            "{}: the hostile workload ({} small groups beside one of {} waiting) within 10% of the same jobs ungrouped",
            s(r, "system"),
            count(r, "small_groups"),
            count(r, "big_group_waiting")
        );
        lines.extend(at_least(&name, n(r, "of_plain"), 0.9, "×"));
    }
    if !lines.is_empty() {
        let _ = writeln!(w, "### The issue's goals (ratios in this run)\n\n{}\n", lines.join("\n"));
    }
}

fn fmt_unit(x: f64, unit: &str) -> String {
    if unit == "×" { format!("{x:.2}×") } else { format!("{} {unit}", num(x, 0)) }
}

fn extras(w: &mut String, rows: &Rows) {
    let scaling: Vec<Scaling> = VQS.iter().flat_map(|sys| rows.scaling(sys)).collect();
    if !scaling.is_empty() {
        let _ = writeln!(
            w,
            "### Scaling: processing N with a backlog waiting, after a warm-up (C as shown)\n\n\
             The load is the warm-up, then the N timed, then the backlog, which stays waiting behind the N \
             for the whole window. The warm-up is processed first, untimed; its rate, the worker's start \
             included, is shown beside.\n"
        );
        let head = ["system", "waiting", "loaded in", "load rate/s", "N", "C", "process/s", "each round", "warm-up"];
        table_head(w, &head.map(String::from));
        for r in &scaling {
            let each: Vec<String> = r.rounds.iter().map(|c| show(*c, 0)).collect();
            table_row(
                w,
                &[
                    r.system.clone(),
                    format!("{}{}", num(r.backlog as f64, 0), if r.capped { " (capped)" } else { "" }),
                    format!("{:.1} s", r.load_s.unwrap_or(f64::NAN)),
                    num(r.enqueue_per_s.unwrap_or(0.0), 0),
                    num(r.n.unwrap_or(0.0), 0),
                    num(r.concurrency.unwrap_or(0.0), 0),
                    show(Cell { value: r.process_per_s, timed_out: r.rounds.iter().any(|c| c.timed_out) }, 0),
                    each.join(" · "),
                    match (r.warmup, r.start_per_s) {
                        (Some(k), Some(rate)) if k > 0.0 => format!("{} at {}/s", num(k, 0), num(rate, 0)),
                        _ => "–".into(),
                    },
                ],
            );
        }
        let _ = writeln!(w);
    }
    let procs = rows.extra("processes");
    if !procs.is_empty() {
        let _ = writeln!(w, "### Worker processes on one database (each at its own C)\n");
        table_head(
            w,
            &["system", "processes", "N", "C each", "process/s from spawn", "process/s over the attempts"]
                .map(String::from),
        );
        for r in procs {
            let timed_out = r["timed_out"] == true;
            table_row(
                w,
                &[
                    s(r, "system").to_owned(),
                    num(n(r, "processes").unwrap_or(0.0), 0),
                    num(n(r, "n").unwrap_or(0.0), 0),
                    num(n(r, "concurrency").unwrap_or(0.0), 0),
                    show(Cell { value: n(r, "process_per_s"), timed_out }, 0),
                    show(Cell { value: n(r, "window_per_s"), timed_out }, 0),
                ],
            );
        }
        let _ = writeln!(
            w,
            "\nFrom spawn: the processes' start-up included. Over the attempts: from the first attempt's \
             start to the last one's end, from the execution records.\n"
        );
    }
    let grouped: Vec<&Value> = rows.extra("flow").into_iter().chain(rows.extra("hostile")).collect();
    if !grouped.is_empty() {
        let _ = writeln!(w, "### Message groups against the same jobs ungrouped (group concurrency 1, C as shown)\n");
        table_head(
            w,
            &[
                "system",
                "workload",
                "N",
                "groups",
                "waiting in the big group",
                "C",
                "grouped process/s",
                "plain process/s",
                "of plain",
            ]
            .map(String::from),
        );
        let count = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |x| num(x, 0));
        for r in grouped {
            let timed_out = r["timed_out"] == true;
            table_row(
                w,
                &[
                    s(r, "system").to_owned(),
                    s(r, "workload").to_owned(),
                    count(n(r, "n")),
                    count(n(r, "groups").or_else(|| n(r, "small_groups"))),
                    count(n(r, "big_group_waiting")),
                    count(n(r, "concurrency")),
                    show(Cell { value: n(r, "process_per_s"), timed_out }, 0),
                    show(Cell { value: n(r, "plain_process_per_s"), timed_out }, 0),
                    n(r, "of_plain").map_or_else(|| "–".to_owned(), |x| format!("{x:.2}")),
                ],
            );
        }
        let _ = writeln!(
            w,
            "\nBoth runs of a line are measured in the same process, one after the other, on fresh databases: \
             the grouped run's jobs carry a group key under group concurrency 1, the plain run's none.\n"
        );
    }
    let memory = rows.extra("memory");
    if !memory.is_empty() {
        let _ = writeln!(w, "### Worker process memory (VmRSS / VmHWM, MiB)\n");
        table_head(w, &["system", "idle RSS", "idle peak", "peak under load", "load"].map(String::from));
        for r in memory {
            let mib = |k: &str| n(r, k).map_or("–".into(), |kb| format!("{:.1}", kb / 1024.0));
            table_row(
                w,
                &[
                    s(r, "system").to_owned(),
                    mib("rss_idle_kb"),
                    mib("hwm_idle_kb"),
                    mib("hwm_load_kb"),
                    format!(
                        "{} jobs at C={}",
                        num(n(r, "n").unwrap_or(0.0), 0),
                        num(n(r, "concurrency").unwrap_or(0.0), 0)
                    ),
                ],
            );
        }
        let _ = writeln!(w);
    }
    let trips = rows.extra("roundtrips");
    if !trips.is_empty() {
        let _ = writeln!(w, "### Database cost per job\n");
        table_head(
            w,
            &["system", "phase", "statements", "round trips", "of which pings", "prepares", "COMMITs"]
                .map(String::from),
        );
        for r in trips {
            for (phase, key) in [
                ("enqueue, one at a time", "enqueue_single"),
                ("enqueue, bulk", "enqueue_bulk"),
                ("processing", "process"),
            ] {
                let Some(p) = r.get(key) else { continue };
                let f = |k: &str| n(p, k).map_or("–".into(), |x| format!("{x:.2}"));
                table_row(
                    w,
                    &[
                        s(r, "system").to_owned(),
                        phase.to_owned(),
                        f("statements"),
                        f("round_trips"),
                        f("pings"),
                        f("prepares"),
                        f("explicit_commits"),
                    ],
                );
            }
        }
        let _ = writeln!(
            w,
            "\nStatements from sqlx's statement events (both backends); round trips, pings (a `Sync` alone: \
             sqlx checks a pooled connection on acquire and on release) and prepares on the PostgreSQL wire, \
             through a counting proxy. SQLite runs in process: no round trips.\n"
        );
    }
}

fn versions(w: &mut String, ctx: &Context) {
    let Some(m) = &ctx.meta else { return };
    let g = |k: &str| m.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
    let _ = writeln!(
        w,
        "Versions: bullmq {}, graphile-worker {}, pg-boss {}, Node.js {}, Redis {}, PostgreSQL {}; \
         {} × {}, {} GiB, kernel {}, Debian {}.",
        g("bullmq"),
        g("graphile-worker"),
        g("pg-boss"),
        g("node"),
        g("redis_server"),
        g("postgres_server"),
        g("host_cpus"),
        g("cpu_model"),
        g("mem_gib"),
        g("kernel"),
        g("debian")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.jsonl");
        std::fs::write(&f, lines.join("\n")).unwrap();
        (dir, f)
    }

    #[test]
    fn ratios_put_vqs_over_peers_for_throughput_and_peers_over_vqs_for_latency() {
        let (_d, f) = write(&[
            r#"{"system":"bullmq","workload":"throughput","enqueue_mode":"bulk","concurrency":50,"enqueue_per_s":20000,"process_per_s":16000,"timed_out":false}"#,
            r#"{"system":"vqs-postgres","workload":"throughput","enqueue_mode":"bulk","concurrency":50,"enqueue_per_s":10000,"process_per_s":40000,"timed_out":false}"#,
            r#"{"system":"bullmq","workload":"latency","p50_ms":0.5,"p95_ms":0.8,"p99_ms":3.0}"#,
            r#"{"system":"vqs-postgres","workload":"latency","p50_ms":1.0,"p95_ms":2.0,"p99_ms":6.0,"timed_out":true}"#,
            r#"{"system":"vqs-postgres","workload":"processes","processes":1,"n":20000,"concurrency":50,"process_per_s":9000,"window_per_s":10000,"timed_out":false}"#,
            r#"{"system":"vqs-postgres","workload":"processes","processes":3,"n":20000,"concurrency":50,"process_per_s":8000,"window_per_s":8500,"timed_out":false}"#,
            "not json",
        ]);
        let t = render(&context(f));
        // bulk 0.5×, process 2.5×, p50 0.5×, p99 0.5×
        assert!(t.contains("| vqs-postgres | bullmq | 0.50× | 2.50× | 0.50× | 0.50× |"), "{t}");
        assert!(t.contains("| vqs-postgres | 10,000 | 40,000 | 1.00 † | 2.00 † | 6.00 † |"), "{t}");
        assert!(t.contains("≥ 2× BullMQ: 2.50× — met"), "{t}");
        assert!(t.contains("p99 ≤ 5 ms: 6.00 ms — missed, 1.2× the goal"), "{t}");
        assert!(
            t.contains("3 worker processes on one database at least as fast as one: 0.85× — missed, short by 15%"),
            "{t}"
        );
        assert!(t.contains("| vqs-postgres | 3 | 20,000 | 50 | 8,000 | 8,500 |"), "{t}");
    }

    fn context(f: PathBuf) -> Context {
        Context {
            files: vec![f],
            meta: None,
            vqs_commit: "abc".into(),
            load_at_start: "0".into(),
            load_at_end: "0".into(),
            fsync_at_start: "-".into(),
            fsync_at_end: "-".into(),
            wall_s: 1.0,
            quick: false,
            notes: vec![],
        }
    }

    #[test]
    fn scaling_rounds_are_judged_by_their_medians_and_each_is_shown() {
        let row = |round: u32, backlog: u32, rate: u32| {
            format!(
                r#"{{"system":"vqs-postgres","workload":"scaling","round":{round},"backlog":{backlog},"backlog_target":{backlog},"n":10000,"warmup":5000,"start_per_s":{start},"concurrency":50,"load_s":1.0,"enqueue_per_s":80000,"process_per_s":{rate},"timed_out":false}}"#,
                start = rate / 2
            )
        };
        // One round alone would say −20% (missed); the medians say −5%.
        let lines = [
            row(1, 10000, 20000),
            row(1, 1000000, 16000),
            row(2, 10000, 19000),
            row(2, 1000000, 19000),
            row(3, 10000, 21000),
            row(3, 1000000, 19500),
        ];
        let (_d, f) = write(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let t = render(&context(f));
        assert!(
            t.contains(
                "- vqs-postgres: flat from 10,000 to 1,000,000 waiting (within 10%): 20,000 → 19,000 jobs/s (-5%, \
                 medians of 3 rounds) — met"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| vqs-postgres | 1,000,000 | 1.0 s | 80,000 | 10,000 | 50 | 19,000 | 16,000 · 19,000 · 19,500 | 5,000 at \
                 9,500/s |"
            ),
            "{t}"
        );
    }

    #[test]
    fn grouped_runs_get_a_table_and_a_goal_each_and_scaling_is_judged_within_ten_percent() {
        let (_d, f) = write(&[
            r#"{"system":"vqs-postgres","workload":"flow","n":20000,"groups":1000,"group_concurrency":1,"concurrency":50,"process_per_s":12000,"plain_process_per_s":24000,"of_plain":0.5,"timed_out":false}"#,
            r#"{"system":"vqs-sqlite","workload":"flow","n":20000,"groups":1000,"group_concurrency":1,"concurrency":50,"process_per_s":9500,"plain_process_per_s":10000,"of_plain":0.95,"timed_out":false}"#,
            r#"{"system":"vqs-postgres","workload":"hostile","n":20000,"big_group_waiting":100000,"small_groups":100,"group_concurrency":1,"concurrency":50,"process_per_s":8000,"plain_process_per_s":24000,"of_plain":0.333,"timed_out":true}"#,
            r#"{"system":"vqs-postgres","workload":"scaling","backlog":10000,"n":10000,"concurrency":50,"process_per_s":20000,"timed_out":false}"#,
            r#"{"system":"vqs-postgres","workload":"scaling","backlog":1000000,"n":10000,"concurrency":50,"process_per_s":17000,"timed_out":false}"#,
        ]);
        let t = render(&context(f));
        assert!(
            t.contains(
                "- vqs-postgres: the flow workload (1,000 groups, group concurrency 1) within 10% of the same jobs \
                 ungrouped: 0.50× — missed, short by 44%"
            ),
            "{t}"
        );
        assert!(t.contains("- vqs-sqlite: the flow workload (1,000 groups, group concurrency 1) within 10% of the same jobs ungrouped: 0.95× — met"), "{t}");
        assert!(
            t.contains(
                "- vqs-postgres: the hostile workload (100 small groups beside one of 100,000 waiting) within 10% of \
                 the same jobs ungrouped: 0.33× — missed"
            ),
            "{t}"
        );
        assert!(t.contains("| vqs-postgres | flow | 20,000 | 1,000 | – | 50 | 12,000 | 24,000 | 0.50 |"), "{t}");
        assert!(
            t.contains("| vqs-postgres | hostile | 20,000 | 100 | 100,000 | 50 | 8,000 † | 24,000 † | 0.33 |"),
            "{t}"
        );
        // 17,000 against 20,000 is 15% slower: within the old 20%, not within the issue's 10%.
        assert!(t.contains("waiting (within 10%): 20,000 → 17,000 jobs/s (-15%) — missed"), "{t}");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(num(1234567.4, 0), "1,234,567");
        assert_eq!(num(999.0, 0), "999");
        assert_eq!(num(0.456, 2), "0.46");
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}

//! The operator CLI: subcommands of the web binary. Each talks to the database directly
//! (no server needed) and prints one JSON document with `--json`, with the admin API's
//! field names.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use vqs::{Clock, SendOpts};

use crate::config::Config;
use vqs_axum::admin::{
    ExecutionsQuery, cancelled_json, crons_json, execution_filter, message_json, message_progress, purged_json,
};
use vqs_axum::admin_pause::{held, queues_json, set_group_paused, set_paused};
use vqs_axum::admin_schedules::SchedulePageQuery;

/// vqs: durable background jobs and crons for this app.
#[derive(Debug, Parser)]
#[command(name = "web", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and run the local dispatcher (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Publish a message: `enqueue probe '{"sleep_ms": 100}'`.
    Enqueue {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
        /// The payload, as JSON.
        payload: String,
        /// While a message with this key is pending or running, queue nothing.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Deliver no sooner than this many seconds from now.
        #[arg(long, default_value_t = 0)]
        delay: u64,
        /// When the key is held: skip (queue nothing), or replace (the key's message, if it
        /// has not started, takes this payload and due time: with --delay, a debounce).
        #[arg(long, default_value = "skip", value_parser = ["skip", "replace"])]
        on_duplicate: String,
        /// The message's group key (a tenant, an account): under the topic's group
        /// concurrency, at most that many of one group run at once.
        #[arg(long)]
        group: Option<String>,
        /// The message's priority: an integer from -100 to 100, lower starts first (default 0).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List executions, newest first.
    Executions {
        #[arg(long)]
        topic: Option<String>,
        /// running, success, failed, snoozed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The page of older executions: those with an id below this one (the previous
        /// page's last id, which it prints as the next `--before`).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Per-topic counts: waiting, delayed, running, succeeded, failed, dead, cancelled; and
    /// whether the topic is paused.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// One message with its deliveries.
    Message {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Find messages by id or by the idempotency key they hold (any topic), newest first.
    Search {
        /// A message id (msg_…) or an idempotency key.
        query: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a delayed message, or one waiting for its retry, due now (its attempts unchanged).
    RunNow {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a message in every consumer group: a pending one never runs, a running one is
    /// told to stop (its job dropped within a second). Fails when it has already finished.
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel every pending message of a topic (running ones finish); `--dry-run` counts them.
    Purge {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
        /// Only this consumer group's deliveries (default: every consumer group of the topic).
        #[arg(long)]
        group: Option<String>,
        /// Count what would be cancelled; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pause a topic (or one message group of it, `--group`): publishing still works, running
    /// jobs finish, nothing new starts (on every process within a second) until `resume`.
    Pause {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
        /// Only this message group of the topic (its key, e.g. a tenant id).
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused topic (or message group, `--group`): its backlog starts again, in due order.
    Resume {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
        /// Only this message group of the topic (its key, e.g. a tenant id).
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the limits per topic (the jobs' defaults, the runtime overrides, which is in
    /// force), or change them: `limits set <topic> --rate 10/60`, `limits clear <topic>`.
    Limits {
        #[command(subcommand)]
        action: Option<LimitsAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// List dead letters, or replay / discard one.
    DeadLetters {
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Apply the retention policy now (`VQS_RETENTION_*`), in bounded batches until nothing
    /// is left to prune; prints what was removed.
    Prune {
        #[arg(long)]
        json: bool,
    },
    /// The crons of vercel.json with their next fire times.
    Crons {
        /// How many fire times to show per cron (at most 100, as the API).
        #[arg(long, default_value_t = 3)]
        next: usize,
        #[arg(long)]
        json: bool,
    },
    /// Runtime schedules: list them with their next fire times, or set, delete or trigger one.
    ///
    /// Without --after or --limit the list pages through every schedule (1000 at a time) and
    /// prints them all; with either it prints one page and, when there are more, the
    /// --after to pass for the next. --json prints the admin API's page:
    /// {"schedules", "next_after", "limit", "total"} (next_after null: nothing after it).
    Schedules {
        #[command(subcommand)]
        action: Option<ScheduleAction>,
        /// List the schedules named after this one (byte order): the next_after of the previous page.
        #[arg(long)]
        after: Option<String>,
        /// List one page of this many schedules (1 to 1000).
        #[arg(long, allow_hyphen_values = true)]
        limit: Option<String>,
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LimitsAction {
    /// Override limits of a topic at runtime (on every process within a second); the
    /// options not given keep their value. `none` clears one.
    Set {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
        /// Leased at once for each consumer group, across processes (1–1000000, or none).
        #[arg(long)]
        concurrency: Option<String>,
        /// Starts per period for each consumer group: N/S, e.g. 10/60 (or none).
        #[arg(long)]
        rate: Option<String>,
        /// Leased at once per message group (needs message groups).
        #[arg(long)]
        group_concurrency: Option<String>,
        /// Starts per period per message group: N/S (needs message groups).
        #[arg(long)]
        group_rate: Option<String>,
    },
    /// Remove every override of a topic: its job's defaults apply again.
    Clear {
        /// The topic (a job's topic, e.g. probe).
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Create or replace a schedule: `set digest --cron '0 9 * * *' --timezone Europe/Berlin --topic probe`.
    Set {
        /// Letters, digits, '-' and '_'.
        name: String,
        /// Five fields, Vercel's dialect, read in the time zone.
        #[arg(long)]
        cron: String,
        /// An IANA time zone name (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The topic each fire enqueues to (a job's topic, e.g. probe).
        #[arg(long)]
        topic: String,
        /// The payload of each fire's message, as JSON (default null).
        #[arg(long)]
        payload: Option<String>,
        /// Store it disabled: it keeps its row and never fires until set again without this.
        #[arg(long)]
        disabled: bool,
        /// After downtime, skip missed ticks instead of firing the most recent one once.
        #[arg(long)]
        no_catch_up: bool,
        /// Fire each tick up to this many seconds after it (0 to 3600, less than the
        /// interval), to spread schedules that share a tick.
        #[arg(long, value_name = "SECONDS")]
        jitter: Option<u32>,
    },
    /// Delete a schedule and its fire records.
    Delete { name: String },
    /// Fire a schedule now, enabled or not; its next tick is unchanged.
    Trigger { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Publish the dead letter's payload again and remove it from the dead letters.
    Replay { id: i64 },
    /// Remove the dead letter for good.
    Discard { id: i64 },
    /// Dead letters grouped by topic and error (the error's first line, at most 200
    /// characters), the largest groups first.
    Groups,
    /// Replay every dead letter of one group: `retry-group <topic> <error>`, the error as
    /// `groups` lists it.
    RetryGroup { topic: String, error: String },
    /// Discard every dead letter of one group: `discard-group <topic> <error>`.
    DiscardGroup { topic: String, error: String },
}

pub(crate) fn print(json_out: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if json_out {
        println!("{value}");
    } else {
        let text = human(value);
        // Every table row ends its line, the last one too.
        if text.is_empty() || text.ends_with('\n') { print!("{text}") } else { println!("{text}") }
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `web pause <topic> [--group G]` / `web resume <topic> [--group G]`: the admin API's checks
/// and answer.
async fn pause_or_resume(
    queue: &vqs::Queue,
    config: &Config,
    topic: &str,
    group: Option<&str>,
    pause: bool,
    json: bool,
) -> Result<()> {
    let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
    let v = match group {
        Some(g) => set_group_paused(queue, &vercel, topic, g, pause).await,
        None => set_paused(queue, &vercel, topic, pause).await,
    }
    .map_err(|e| anyhow!("{}", e.message))?;
    print(json, &v, |_| {
        if let Some(g) = group {
            if pause {
                format!(
                    "group {g:?} of {topic} paused: none of its messages starts until `web resume {topic} --group {g}` \
                     (running jobs finish; the topic's other groups go on)\n"
                )
            } else {
                format!("group {g:?} of {topic} resumed: its waiting messages start in due order\n")
            }
        } else if pause {
            format!("{topic} paused: nothing new starts until `web resume {topic}` (running jobs finish)\n")
        } else {
            format!("{topic} resumed: its waiting messages start in due order\n")
        }
    });
    Ok(())
}

/// The queues table's `paused` cell: `paused`, the paused groups (`groups: a, b`), or `-`.
fn paused_cell(t: &Value) -> String {
    let groups: Vec<&str> = t["paused_groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    match (t["paused"] == json!(true), groups.is_empty()) {
        (true, _) => "paused".into(),
        (false, true) => "-".into(),
        (false, false) => format!("groups: {}", groups.join(", ")),
    }
}

/// The line under a topic's row listing its busiest message groups
/// (`  busiest groups: a 2 running 5 waiting (group_concurrency), b 1 running 0 waiting`),
/// empty for a topic with none.
fn busiest_groups_line(t: &Value) -> String {
    let groups: Vec<String> = t["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let more = if g["waiting_more"] == json!(true) { "+" } else { "" };
            let held = g["held"].as_str().map(|h| format!(" ({h})")).unwrap_or_default();
            format!("{} {} running {}{more} waiting{held}", s(&g["group"]), s(&g["running"]), s(&g["waiting"]))
        })
        .collect();
    if groups.is_empty() { String::new() } else { format!("  busiest groups: {}\n", groups.join(", ")) }
}

/// Run the CLI.
pub async fn run(cli: Cli, config: Config) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        return crate::runtime::serve(config).await;
    }
    // A command that only reads (or changes an existing message) never creates a database (opening a SQLite file creates it):
    // a typo in DATABASE_URL or the wrong directory would otherwise show an empty queue.
    let reads_only = matches!(
        command,
        Command::Executions { .. }
            | Command::Queues { .. }
            | Command::Message { .. }
            | Command::Search { .. }
            | Command::RunNow { .. }
            | Command::Cancel { .. }
            | Command::Purge { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Limits { .. }
            | Command::Crons { .. }
            | Command::DeadLetters { action: None | Some(DeadLetterAction::Groups), .. }
            | Command::Schedules {
                action: None | Some(ScheduleAction::Delete { .. } | ScheduleAction::Trigger { .. }),
                ..
            }
    );
    if reads_only && config.database_url.starts_with("sqlite:") {
        let file = vqs_sqlite::database_file(&config.database_url).map_err(|e| anyhow!("{e}"))?;
        if !file.exists() {
            bail!(
                "no database at {}: run `web migrate` or `web serve` first (or set DATABASE_URL to the database to read)",
                file.display()
            );
        }
    }
    let queue = crate::runtime::open_queue(&config.database_url, Clock::system()).await?;
    match command {
        Command::Serve => unreachable!("handled above"),
        Command::Migrate => println!("migrations applied"),
        Command::Enqueue { topic, payload, idempotency_key, delay, on_duplicate, group, priority, json } => {
            let priority =
                priority.as_deref().map(vqs::parse_priority).transpose().map_err(|e| anyhow!("--priority: {e}"))?;
            let payload: Value = serde_json::from_str(&payload).with_context(|| {
                format!("the payload is not valid JSON: {payload:?} (quote it: '{{\"sleep_ms\": 100}}')")
            })?;
            let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
            vqs_axum::admin::require_consumed_topic(&vercel, &topic).map_err(|e| anyhow!("{e}"))?;
            let on_duplicate = vqs::OnDuplicate::parse(&on_duplicate)
                .ok_or_else(|| anyhow!("--on-duplicate must be skip or replace, not {on_duplicate:?}"))?;
            let opts = SendOpts {
                idempotency_key,
                delay: std::time::Duration::from_secs(delay),
                on_duplicate,
                group,
                priority,
                ..SendOpts::default()
            };
            let sent = queue.send(&topic, serde_json::to_vec(&payload)?, opts).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &json!(sent), |v| {
                let note = if sent.duplicate {
                    " (duplicate: an equal message is already pending)"
                } else if sent.replaced {
                    " (replaced: the key's waiting message takes this payload and due time)"
                } else {
                    ""
                };
                format!("{}{note}\n", s(&v["messageId"]))
            });
        }
        Command::Executions { topic, status, limit, before, json } => {
            let q = ExecutionsQuery { topic, status, message_id: None, limit: Some(limit), before };
            let filter = execution_filter(q).map_err(|e| anyhow!("{}", e.message))?;
            let (rows, next) =
                vqs_axum::admin::executions_page(&queue, filter).await.map_err(|e| anyhow!("{}", e.message))?;
            let rows = json!(rows);
            print(json, &rows, |v| {
                let mut out = format!(
                    "{:>8}  {:<16} {:<36} {:>3}  {:<9} {:<24} {:>8}  error\n",
                    "id", "topic", "message", "try", "status", "started", "ms"
                );
                for e in v.as_array().into_iter().flatten() {
                    out += &format!(
                        "{:>8}  {:<16} {:<36} {:>3}  {:<9} {:<24} {:>8}  {}\n",
                        s(&e["id"]),
                        s(&e["topic"]),
                        s(&e["message_id"]),
                        s(&e["attempt"]),
                        s(&e["status"]),
                        s(&e["started_at"]),
                        s(&e["duration_ms"]),
                        s(&e["error"])
                    );
                }
                if let Some(next) = next {
                    out += &format!("older: --before {next}\n");
                }
                out
            });
        }
        Command::Queues { json } => {
            let stats = queues_json(&queue).await.map_err(|e| anyhow!("{}", e.message))?;
            print(json, &stats, |v| {
                let mut out = format!(
                    "{:<24} {:>8} {:>8} {:>8} {:>10} {:>8} {:>6} {:>9}  {}\n",
                    "topic", "waiting", "delayed", "running", "succeeded", "failed", "dead", "cancelled", "paused"
                );
                for t in v.as_array().into_iter().flatten() {
                    out += &format!(
                        "{:<24} {:>8} {:>8} {:>8} {:>10} {:>8} {:>6} {:>9}  {}\n",
                        s(&t["topic"]),
                        s(&t["waiting"]),
                        s(&t["delayed"]),
                        s(&t["running"]),
                        s(&t["succeeded"]),
                        s(&t["failed"]),
                        s(&t["dead"]),
                        s(&t["cancelled"]),
                        paused_cell(t)
                    );
                    out += &busiest_groups_line(t);
                }
                out
            });
        }
        Command::Message { id, json } => {
            let m = queue.message(&id).await?.ok_or_else(|| anyhow!("no message {id}"))?;
            let progress = message_progress(&queue, &id).await.map_err(|e| anyhow!("{}", e.message))?;
            let mut v = message_json(&m, &progress);
            // The triggers of vercel.json count too (a `maxConcurrency` holds like a limit).
            let state =
                crate::runtime::state(&config, queue.clone(), crate::runtime::load_vercel(&config.vercel_json)?);
            if let Some(why) = held(&state, &m).await.map_err(|e| anyhow!("{}", e.message))? {
                v["held"] = json!(why);
            }
            print(json, &v, |v| serde_json::to_string_pretty(v).unwrap_or_default() + "\n");
        }
        Command::Search { query, json } => {
            let v = vqs_axum::admin_search::search_json(&queue, &query).await.map_err(|e| anyhow!("{}", e.message))?;
            print(json, &v, |v| {
                let found = v["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
                if found.is_empty() {
                    return format!("no message has id or idempotency key {:?}\n", query.trim());
                }
                found
                    .iter()
                    .map(|m| {
                        let key = m["idempotency_key"].as_str().unwrap_or("-");
                        format!(
                            "{}  {}  {}  key={key}\n",
                            m["id"].as_str().unwrap_or(""),
                            m["topic"].as_str().unwrap_or(""),
                            m["created_at"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            });
        }
        Command::RunNow { id, json } => {
            let made_due = queue.run_now(&id).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &json!({ "messageId": id, "madeDue": made_due }), |_| match made_due {
                0 => format!("{id} was due already\n"),
                n => format!("{id} is due now ({n} consumer group{})\n", if n == 1 { "" } else { "s" }),
            });
        }
        Command::Cancel { id, json } => {
            let done = queue.cancel(&id).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &cancelled_json(&id, &done), |_| {
                let mut out = format!("{id} cancelled\n");
                if !done.pending.is_empty() {
                    out += &format!("  will not run in: {}\n", done.pending.join(", "));
                }
                if !done.running.is_empty() {
                    out += &format!("  running job told to stop in: {}\n", done.running.join(", "));
                }
                out
            });
        }
        Command::Purge { topic, group, dry_run, json } => {
            if group.as_deref() == Some("") {
                bail!("empty --group: name a consumer group, or leave --group out to purge every consumer group");
            }
            let n = queue.purge(&topic, group.as_deref(), dry_run).await.map_err(|e| anyhow!("{e}"))?;
            print(json, &purged_json(n, dry_run), |_| {
                let plural = if n == 1 { "" } else { "s" };
                let scope = match &group {
                    Some(g) => format!("{topic} (consumer group {g})"),
                    None => topic.clone(),
                };
                if dry_run {
                    format!("{n} pending message{plural} of {scope} would be cancelled (dry run: nothing changed)\n")
                } else {
                    format!("{n} pending message{plural} of {scope} cancelled\n")
                }
            });
        }
        Command::Pause { topic, group, json } => {
            pause_or_resume(&queue, &config, &topic, group.as_deref(), true, json).await?
        }
        Command::Limits { action, json } => crate::cli_limits::run(&queue, &config, action, json).await?,
        Command::Resume { topic, group, json } => {
            pause_or_resume(&queue, &config, &topic, group.as_deref(), false, json).await?
        }
        Command::DeadLetters { action, json } => crate::cli_dead_letters::run(&queue, action, json).await?,
        Command::Prune { json } => {
            let mut total = vqs::store::MaintenanceReport::default();
            loop {
                let r = queue.maintenance(&config.retention).await?;
                total.executions_rescued += r.executions_rescued;
                total.messages_pruned += r.messages_pruned;
                total.finished_messages_pruned += r.finished_messages_pruned;
                total.executions_pruned += r.executions_pruned;
                total.dead_letters_pruned += r.dead_letters_pruned;
                total.cron_runs_rescued += r.cron_runs_rescued;
                total.cron_runs_pruned += r.cron_runs_pruned;
                total.flow_group_slots_pruned += r.flow_group_slots_pruned;
                total.flow_groups_pruned += r.flow_groups_pruned;
                if !r.hit_batch_limit(config.retention.batch) {
                    break;
                }
            }
            print(json, &json!(total), |v| {
                let mut out = String::new();
                for (k, n) in v.as_object().into_iter().flatten() {
                    out += &format!("{k:<26} {n}\n");
                }
                out
            });
        }
        Command::Crons { next, json } => {
            let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
            let state = crate::runtime::state(&config, queue, vercel);
            let crons = crons_json(&state, next.min(vqs_axum::admin::MAX_CRON_NEXT))
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            print(json, &crons, |v| {
                let mut out = String::new();
                for c in v.as_array().into_iter().flatten() {
                    let last = &c["last_run"];
                    out += &format!(
                        "{:<32} {:<16} {:<8} last run: {} {}\n",
                        s(&c["path"]),
                        s(&c["schedule"]),
                        s(&c["state"]),
                        s(&last["started_at"]),
                        s(&last["outcome"])
                    );
                    for t in c["next"].as_array().into_iter().flatten() {
                        out += &format!("    next {}\n", s(t));
                    }
                }
                out
            });
        }
        Command::Schedules { action, after, limit, json } => {
            schedules(&config, &queue, action, SchedulePageQuery { after, limit }, json).await?
        }
    }
    Ok(())
}

/// `web schedules [set|delete|trigger]`, through the admin API's functions.
async fn schedules(
    config: &Config,
    queue: &vqs::Queue,
    action: Option<ScheduleAction>,
    page: SchedulePageQuery,
    json: bool,
) -> Result<()> {
    use vqs_axum::admin_schedules::{ScheduleBody, delete_schedule, list_schedules, trigger_schedule, upsert_schedule};
    let api = |e: vqs_axum::api_error::ApiError| anyhow!("{}", e.message);
    if action.is_some() && (page.after.is_some() || page.limit.is_some()) {
        bail!("--after and --limit page the list: use them with `web schedules` alone, not with a subcommand");
    }
    match action {
        None => {
            let one_page = page.after.is_some() || page.limit.is_some();
            let (mut after, limit) = page.parse().map_err(api)?;
            let limit = if one_page { limit } else { vqs::SCHEDULE_PAGE_MAX };
            let mut listed = list_schedules(queue, after.as_deref(), limit).await.map_err(api)?;
            // Without --after or --limit: every page, merged into one.
            while !one_page && !listed["next_after"].is_null() {
                after = listed["next_after"].as_str().map(str::to_owned);
                let next = list_schedules(queue, after.as_deref(), limit).await.map_err(api)?;
                let more = next["schedules"].as_array().cloned().unwrap_or_default();
                if let Some(rows) = listed["schedules"].as_array_mut() {
                    rows.extend(more);
                }
                listed["next_after"] = next["next_after"].clone();
                listed["total"] = next["total"].clone();
            }
            print(json, &listed, |v| {
                let mut out =
                    format!("{:<24} {:<16} {:<20} {:<16} {:<8} next\n", "name", "cron", "timezone", "topic", "enabled");
                for r in v["schedules"].as_array().into_iter().flatten() {
                    out += &format!(
                        "{:<24} {:<16} {:<20} {:<16} {:<8} {}\n",
                        s(&r["name"]),
                        s(&r["cron"]),
                        s(&r["timezone"]),
                        s(&r["topic"]),
                        s(&r["enabled"]),
                        s(&r["next"][0])
                    );
                }
                if let Some(next) = v["next_after"].as_str() {
                    out += &format!("more: web schedules --after {next} --limit {}\n", s(&v["limit"]));
                }
                out
            });
        }
        Some(ScheduleAction::Set { name, cron, timezone, topic, payload, disabled, no_catch_up, jitter }) => {
            let payload: Value = match payload {
                None => Value::Null,
                Some(p) => serde_json::from_str(&p).with_context(|| {
                    format!("--payload is not valid JSON: {p:?} (quote it: --payload '{{\"tenant\": \"acme\"}}')")
                })?,
            };
            let vercel = crate::runtime::load_vercel(&config.vercel_json)?;
            let body = ScheduleBody {
                cron,
                timezone,
                topic,
                payload,
                enabled: Some(!disabled),
                catch_up: Some(!no_catch_up),
                jitter_seconds: jitter,
            };
            let v = upsert_schedule(queue, &vercel, body.into_schedule(&name)).await.map_err(api)?;
            print(json, &v, |v| {
                let mut out = format!("schedule {} set ({} in {})\n", s(&v["name"]), s(&v["cron"]), s(&v["timezone"]));
                if v["enabled"] == false {
                    out += "  disabled: it never fires until set again without --disabled\n";
                }
                if v["catch_up"] == false {
                    out += "  no catch-up: ticks missed while nothing ran are skipped\n";
                }
                if v["jitter_seconds"].as_u64().is_some_and(|j| j > 0) {
                    out += &format!("  each fire up to {}s after its tick (jitter)\n", v["jitter_seconds"]);
                }
                for t in v["next"].as_array().into_iter().flatten() {
                    out += &format!("    next {}\n", s(t));
                }
                out
            });
        }
        Some(ScheduleAction::Delete { name }) => {
            let v = delete_schedule(queue, &name).await.map_err(api)?;
            print(json, &v, |_| format!("schedule {name} deleted\n"));
        }
        Some(ScheduleAction::Trigger { name }) => {
            let v = trigger_schedule(queue, &name).await.map_err(api)?;
            print(json, &v, |v| format!("schedule {name} fired: {}\n", s(&v["messageId"])));
        }
    }
    Ok(())
}

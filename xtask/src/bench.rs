//! `cargo xtask bench`: build `vqs-bench` (release), run it beside the peers' benchmark
//! (`../shared/bench/peers/run.sh`, BullMQ, graphile-worker and pg-boss) in one run, then
//! run vqs's own extra workloads (scaling, memory, round trips, one against three worker
//! processes, message groups against the same jobs ungrouped) and print one table with
//! every system's figures and vqs's ratio to each peer. This orchestrates binaries only.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use crate::args::Args;
use crate::bench_table;

pub const USAGE: &str = "cargo xtask bench [--quick] [--no-peers] [--peers DIR] [--postgres URL | --no-postgres] \
[--rounds N] [--backlog LIST] [--no-extras] [--budget-s N] [-- VQS-BENCH ARGS]";

pub const HELP: &str = "    bench [--quick] [--no-peers] [--peers DIR] [--postgres URL | --no-postgres] [--rounds N]
          [--backlog LIST] [--no-extras] [--budget-s N] [-- VQS-BENCH ARGS]
                      benchmark vqs (SQLite and PostgreSQL) against BullMQ, graphile-worker and
                      pg-boss in one run (the peers' run.sh, as root) and print one table with
                      vqs's ratio to each peer, then scaling, memory, round trips, 1 vs 3
                      processes and the flow and hostile workloads (grouped against plain).
                      --quick: small N (a minute or two); --no-peers: vqs only;
                      --peers DIR (or VQS_BENCH_PEERS): the peers folder, default
                      ../shared/bench/peers; --postgres URL: the server (default
                      postgres://postgres@127.0.0.1:5432); --rounds N: peers' rounds (default 1);
                      --backlog LIST: scaling backlogs (default 10000,1000000; loading each is
                      capped by what is left of --budget-s, default 540 s for the whole run);
                      results in target/bench/results. See BENCHMARKS.md.
";

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

struct Opts {
    quick: bool,
    peers: bool,
    peers_dir: Option<PathBuf>,
    postgres: Option<String>,
    rounds: u64,
    backlog: String,
    extras: bool,
    budget_s: u64,
    passthrough: Vec<String>,
}

fn parse(rest: Vec<String>) -> Result<Opts, String> {
    let mut a = Args::new(rest);
    let passthrough = a.passthrough();
    let quick = a.flag("--quick");
    let peers = !a.flag("--no-peers");
    let extras = !a.flag("--no-extras");
    let no_postgres = a.flag("--no-postgres");
    let peers_dir = a.value("--peers")?.map(PathBuf::from);
    let postgres = a.value("--postgres")?;
    if no_postgres && postgres.is_some() {
        return Err("--postgres and --no-postgres contradict each other".into());
    }
    let postgres = if no_postgres { None } else { Some(postgres.unwrap_or_else(|| DEFAULT_POSTGRES.into())) };
    let rounds = a.number("--rounds", 1, 9)?.unwrap_or(1);
    let budget_s = a.number("--budget-s", 60, 86_400)?.unwrap_or(540);
    let backlog = a.value("--backlog")?.unwrap_or_else(|| if quick { "10000" } else { "10000,1000000" }.into());
    if backlog.split(',').any(|b| b.parse::<u64>().map_or(true, |n| n == 0)) {
        return Err(format!("--backlog must be a comma-separated list of positive numbers, got {backlog:?}"));
    }
    a.finish()?;
    Ok(Opts { quick, peers, peers_dir, postgres, rounds, backlog, extras, budget_s, passthrough })
}

/// The knobs of a quick run, for vqs-bench and the peers' harness alike (both read them).
const QUICK_ENV: [(&str, &str); 4] =
    [("BENCH_N", "2000"), ("BENCH_SINGLE_N", "2000"), ("BENCH_SINGLE_TIMEOUT_S", "2"), ("BENCH_LATENCY_N", "300")];

pub fn run(root: &Path, rest: Vec<String>) -> ExitCode {
    let opts = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let root = &root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target_dir.join("bench/results");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("error: cannot create {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    say("building vqs-bench (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo).current_dir(root).args(["build", "--release", "-q", "-p", "vqs-bench"]).status();
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!("error: building vqs-bench failed");
        return ExitCode::FAILURE;
    }
    let bin = target_dir.join("release/vqs-bench");
    let stamp = stamp();
    let load_at_start = loadavg();
    let fsync_at_start = fsync_probe(&out_dir);

    // vqs-bench's command line, for run.sh or for us.
    let mut vqs = vec![bin.display().to_string()];
    match &opts.postgres {
        Some(url) => vqs.extend(["--backends".into(), "sqlite,postgres".into(), "--postgres".into(), url.clone()]),
        None => vqs.extend(["--backends".into(), "sqlite".into()]),
    }
    vqs.extend(opts.passthrough.iter().cloned());
    let quick_env: &[(&str, &str)] = if opts.quick { &QUICK_ENV } else { &[] };

    let mut files = Vec::new();
    let mut meta = None;
    let peers = if opts.peers {
        find_peers(root, opts.peers_dir.as_deref()).and_then(|dir| {
            if is_root() {
                Ok(dir)
            } else {
                Err("the peers' run.sh must run as root (it may apt-get install redis-server and uses su \
                     postgres): run `cargo xtask bench` as root to include the peers"
                    .into())
            }
        })
    } else {
        Err("--no-peers".into())
    };
    match peers {
        Ok(src) => match run_peers(&src, &target_dir, &out_dir, &vqs, quick_env, opts.rounds, opts.budget_s) {
            Ok((results, m)) => {
                files.push(results);
                meta = m;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(why) => {
            if why != "--no-peers" {
                eprintln!("note: {why}\nnote: running vqs alone: the table has no peers and no ratios");
            }
            let file = out_dir.join(format!("vqs-{stamp}.jsonl"));
            say(&format!("vqs: {}", vqs[1..].join(" ")));
            if let Err(e) = run_to_file(&vqs, quick_env, &file) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            files.push(file);
        }
    }
    // The extras get what is left of the budget: each large backlog's load is capped so
    // that the whole run ends in time, and they are skipped when too little is left.
    let mut notes = Vec::new();
    let left = opts.budget_s.saturating_sub(started.elapsed().as_secs());
    if opts.extras && left < 90 {
        notes.push(format!(
            "scaling, memory, round trips, processes, flow and hostile were skipped: {left} s of the {} s budget were left \
             (`--budget-s` for more, or `--no-peers`)",
            opts.budget_s
        ));
    } else if opts.extras {
        let load_budget = ((left - 60) / 3).clamp(10, 90);
        let file = out_dir.join(format!("vqs-extras-{stamp}.jsonl"));
        let mut cmd = vqs.clone();
        cmd.extend([
            "--workload".into(),
            "scaling,memory,roundtrips,processes,flow,hostile".into(),
            "--backlog".into(),
            opts.backlog.clone(),
        ]);
        cmd.extend(["--load-budget-s".into(), load_budget.to_string()]);
        if opts.quick {
            cmd.extend(
                ["--scaling-n", "2000", "--scaling-warmup", "1000", "--roundtrip-n", "1000", "--hostile-big", "10000"]
                    .map(String::from),
            );
        } else {
            // Each backlog measured three times, in turn; the table judges the median.
            cmd.extend(["--scaling-rounds", "3"].map(String::from));
        }
        say(&format!("vqs extras: {}", cmd[1..].join(" ")));
        if let Err(e) = run_to_file(&cmd, quick_env, &file) {
            eprintln!("error: {e} (the table shows what was measured)");
        }
        files.push(file);
    }

    let context = bench_table::Context {
        files: files.clone(),
        meta,
        vqs_commit: git_commit(root),
        load_at_start,
        load_at_end: loadavg(),
        fsync_at_start,
        fsync_at_end: fsync_probe(&out_dir),
        wall_s: started.elapsed().as_secs_f64(),
        quick: opts.quick,
        notes,
    };
    let table = bench_table::render(&context);
    println!("\n{table}");
    let summary = out_dir.join(format!("summary-{stamp}.md"));
    match std::fs::write(&summary, &table) {
        Ok(()) => say(&format!("results: {} (and the JSON lines beside it)", summary.display())),
        Err(e) => eprintln!("warning: cannot write {}: {e}", summary.display()),
    }
    ExitCode::SUCCESS
}

fn say(msg: &str) {
    eprintln!("[xtask bench] {msg}");
}

/// The peers folder: `--peers`, `VQS_BENCH_PEERS`, or `shared/bench/peers` beside the
/// workspace (or beside its parent, for a worktree one level down).
fn find_peers(root: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match (given, std::env::var_os("VQS_BENCH_PEERS")) {
        (Some(dir), _) => vec![dir.to_owned()],
        (None, Some(dir)) => vec![PathBuf::from(dir)],
        (None, None) => vec![root.join("../shared/bench/peers"), root.join("../../shared/bench/peers")],
    };
    if let Some(dir) = candidates.iter().find(|d| d.join("run.sh").is_file() && d.join("node/harness.js").is_file()) {
        return Ok(dir.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| format!("  {}", d.display())).collect();
    Err(format!(
        "the peers' benchmark (a folder with run.sh and node/harness.js) is not in:\n{}\n\
         point to it with `cargo xtask bench --peers DIR` or VQS_BENCH_PEERS=DIR",
        looked.join("\n")
    ))
}

/// Copy the peers folder (read-only where it lives; run.sh installs npm packages beside
/// itself) to `target/bench/peers`, keeping an earlier copy's `node_modules`, and run it
/// there with vqs as its extra system. Returns the results file and run.sh's metadata.
fn run_peers(
    src: &Path,
    target_dir: &Path,
    out_dir: &Path,
    vqs: &[String],
    quick_env: &[(&str, &str)],
    rounds: u64,
    budget_s: u64,
) -> Result<(PathBuf, Option<serde_json::Value>), String> {
    let copy = target_dir.join("bench/peers");
    copy_tree(src, &copy).map_err(|e| format!("copying {} to {}: {e}", src.display(), copy.display()))?;
    let extra = vqs.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    say(&format!("peers: {}/run.sh with ROUNDS={rounds}, vqs as BENCH_EXTRA_CMD", copy.display()));
    let t0 = SystemTime::now();
    let mut cmd = Command::new("bash");
    cmd.arg(copy.join("run.sh"))
        .env("ROUNDS", rounds.to_string())
        .env("BENCH_OUT_DIR", out_dir)
        .env("BENCH_EXTRA_CMD", &extra)
        .envs(quick_env.iter().copied())
        .stdout(Stdio::null());
    if std::env::var_os("BENCH_BUDGET_S").is_none() {
        // With several rounds, run.sh starts no new round after this; leave time for the extras.
        cmd.env("BENCH_BUDGET_S", (budget_s * 6 / 10).to_string());
    }
    if std::env::var_os("BENCH_CMD_TIMEOUT_S").is_none() {
        // vqs runs both backends in one command; the peers' default 240 s is tight for that
        // on a busy machine.
        cmd.env("BENCH_CMD_TIMEOUT_S", "360");
    }
    let status = cmd.status().map_err(|e| format!("cannot run bash: {e}"))?;
    if !status.success() {
        return Err(format!("run.sh failed ({status}); its log is in {}", out_dir.display()));
    }
    let newest = std::fs::read_dir(out_dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("results-")
                && name.ends_with(".jsonl")
                && p.metadata().and_then(|m| m.modified()).is_ok_and(|m| m >= t0)
        })
        .max()
        .ok_or_else(|| format!("run.sh wrote no results-*.jsonl in {}", out_dir.display()))?;
    let meta_path = newest.with_extension("meta.json");
    let meta = std::fs::read_to_string(meta_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    Ok((newest, meta))
}

/// Run a command with its stdout (JSON lines) into `file`, stderr to ours.
fn run_to_file(cmd: &[String], env: &[(&str, &str)], file: &Path) -> Result<(), String> {
    let out = std::fs::File::create(file).map_err(|e| format!("cannot create {}: {e}", file.display()))?;
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .envs(env.iter().copied())
        .stdout(out)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
    if status.success() { Ok(()) } else { Err(format!("vqs-bench failed ({status})")) }
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == "node_modules" || name_str.starts_with("results-") {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            let _ = std::fs::remove_file(&to);
            std::fs::copy(&from, &to)?;
            let mode = if name_str.ends_with(".sh") { 0o755 } else { 0o644 };
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The cost of a durable 8 kB write here (write + fdatasync, 50 times; median and 90th
/// percentile): what every PostgreSQL commit waits for (`synchronous_commit=on`), so the
/// floor under every durable throughput and latency figure. A quiet machine of this kind
/// does it in about 0.2 ms.
fn fsync_probe(dir: &Path) -> String {
    use std::io::{Seek, Write};
    let path = dir.join(".fsync-probe");
    let measure = || -> std::io::Result<Vec<f64>> {
        let mut f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        let block = [0u8; 8192];
        let mut ms = Vec::with_capacity(50);
        for _ in 0..50 {
            f.seek(std::io::SeekFrom::Start(0))?;
            let t = Instant::now();
            f.write_all(&block)?;
            f.sync_data()?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(ms)
    };
    let result = measure();
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(mut ms) => {
            ms.sort_by(f64::total_cmp);
            format!("{:.2} ms median, {:.2} ms p90", ms[ms.len() / 2], ms[ms.len() * 9 / 10])
        }
        Err(e) => format!("not measured ({e})"),
    }
}

fn git_commit(root: &Path) -> String {
    Command::new("git")
        .current_dir(root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

/// `YYYYMMDD-HHMMSS` (UTC), as run.sh stamps its files.
fn stamp() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(vec!["--quick".into(), "--no-postgres".into(), "--".into(), "--n".into(), "5".into()]).unwrap();
        assert!(o.quick && o.peers && o.extras && o.postgres.is_none());
        assert_eq!(o.passthrough, ["--n", "5"]);
        assert_eq!(o.backlog, "10000");
        let o = parse(vec![]).unwrap();
        assert_eq!(o.postgres.as_deref(), Some(DEFAULT_POSTGRES));
        assert_eq!(o.backlog, "10000,1000000");
        assert!(parse(vec!["--backlog".into(), "10k".into()]).is_err());
        assert!(parse(vec!["--no-postgres".into(), "--postgres".into(), "x".into()]).is_err());
        assert!(parse(vec!["--what".into()]).is_err());
    }

    #[test]
    fn a_missing_peers_folder_says_where_it_looked_and_how_to_point_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_peers(&dir.path().join("ws"), Some(&dir.path().join("nowhere"))).unwrap_err();
        assert!(err.contains("nowhere") && err.contains("--peers DIR") && err.contains("VQS_BENCH_PEERS"), "{err}");
    }

    #[test]
    fn quoting_survives_bash() {
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
    }

    #[test]
    fn stamps_look_like_run_sh_stamps() {
        let s = stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert!(s.starts_with("20") && s.as_bytes()[8] == b'-', "{s}");
    }
}

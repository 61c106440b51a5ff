//! Workspace tasks, reached through `cargo xtask` (an alias in `.cargo/config.toml`).
//! Depends on no workspace crate; the cron-dialect validator is the core's own source file,
//! included by path so that one validator serves the scheduler, the CLI and scaffolding.

use std::path::PathBuf;
use std::process::ExitCode;

mod args;
mod bench;
mod bench_table;
#[path = "../../crates/vqs/src/cron_dialect.rs"]
mod cron_dialect;
mod names;
mod new_cron;
mod new_job;
mod plan;
mod vercel_json;

const HELP_HEAD: &str = "\
cargo xtask — workspace tasks for vqs

USAGE:
    cargo xtask <TASK> [ARGS]

TASKS:
    new-job <name> [--max-attempts N] [--max-deliveries N] [--retry-after SECONDS]
            [--max-concurrency N] [--dry-run]
                      add a job: crates/jobs/src/<name>.rs, its consumer route
                      apps/web/src/routes/queue/<name>.rs, both registered, and its
                      queue/v2beta trigger in vercel.json
    new-cron <name> --schedule \"<expr>\" [--enqueues <job-topic>] [--dry-run]
                      add a guarded cron route apps/web/src/routes/cron/<name>.rs, registered,
                      and its vercel.json crons entry (schedule in Vercel's dialect, UTC)
";

const HELP_TAIL: &str = "    help              print this help

    --dry-run prints the plan and writes nothing. Names are kebab-case (send-invoice).
    Everything is checked before anything is written; existing files are never overwritten.
    --root DIR works on another checkout of the workspace.
";

fn workspace_root(args: &mut Vec<String>) -> PathBuf {
    if let Some(i) = args.iter().position(|a| a == "--root")
        && i + 1 < args.len()
    {
        let dir = args.remove(i + 1);
        args.remove(i);
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scaffold(task: &str, root: PathBuf, rest: Vec<String>) -> ExitCode {
    let mut args = args::Args::new(rest);
    let (planned, usage) = match task {
        "new-job" => (new_job::plan(&root, &mut args), new_job::USAGE),
        _ => (new_cron::plan(&root, &mut args), new_cron::USAGE),
    };
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}\nusage: {usage}");
            return ExitCode::from(2);
        }
    };
    plan.print(&root);
    if args.dry_run {
        println!("dry run: nothing was written");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = plan.apply() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    plan.rustfmt();
    println!("done: `cargo build -p web` and the new route answers");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root(&mut args);
    let task = if args.is_empty() { None } else { Some(args.remove(0)) };
    match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP_HEAD}{}{HELP_TAIL}", bench::HELP);
            ExitCode::SUCCESS
        }
        Some(t @ ("new-job" | "new-cron")) => scaffold(t, root, args),
        Some("bench") => bench::run(&root, args),
        Some(other) => {
            eprintln!("error: unknown task {other:?}\n");
            eprint!("{HELP_HEAD}{}{HELP_TAIL}", bench::HELP);
            ExitCode::from(2)
        }
    }
}

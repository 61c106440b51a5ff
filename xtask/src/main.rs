//! Workspace tasks, reached through `cargo xtask` (an alias in `.cargo/config.toml`).
//! Depends on no workspace crate.

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask — workspace tasks for vqs

USAGE:
    cargo xtask <TASK> [ARGS]

TASKS:
    bench [ARGS]      run the SQLite benchmark (release build); ARGS go to vqs-bench,
                      e.g. `cargo xtask bench --jobs 20000 --concurrency 50`
    help              print this help

COMING (see the issue tracker):
    new-job <name>    add a job: its file in crates/jobs, its queue route, vercel.json trigger
    new-cron <name> --schedule \"<expr>\"
                      add a guarded cron route and its vercel.json entry
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("bench") => {
            let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["run", "--release", "-q", "-p", "web", "--bin", "vqs-bench", "--"])
                .args(&args[1..])
                .status();
            match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: could not run cargo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(other) => {
            eprintln!("error: unknown task {other:?}\n");
            eprint!("{HELP}");
            ExitCode::from(2)
        }
    }
}

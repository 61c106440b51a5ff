//! The operator CLI: subcommands of the web binary.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// vqs: durable background jobs and crons for this app.
#[derive(Debug, Parser)]
#[command(name = "web", version, about)]
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
}

/// Run the CLI.
pub async fn run(cli: Cli, config: Config) -> Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::runtime::serve(config).await,
        Command::Migrate => {
            crate::runtime::open_queue(&config.database_url, vqs::Clock::system()).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

pub mod cron;
pub mod queue;

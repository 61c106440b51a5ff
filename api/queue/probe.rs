//! Vercel Function: the private queue consumer of the `probe` job (its `queue/v2beta`
//! trigger is in vercel.json). Built with `--features vercel`.

#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    web::vercel_function::run_consumer(vqs::QueueHandler::new(jobs::Probe)).await
}

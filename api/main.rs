//! Vercel Function: the public app (health, admin API, crons). Built with `--features vercel`.

#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    web::vercel_function::run_app().await
}

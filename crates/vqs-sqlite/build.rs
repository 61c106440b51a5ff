//! Rebuild when a migration is added: `sqlx::migrate!` embeds migrations/sqlite at compile
//! time, and a proc macro cannot ask cargo to watch a directory (sqlx's documented build script).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}

use clap::Parser;
use redis_operator::cli::{execute, Cli};

#[tokio::main]
async fn main() {
    if let Err(error) = execute(Cli::parse()).await {
        eprintln!("redis-operator: {error}");
        std::process::exit(1);
    }
    // Exit here rather than when the runtime is dropped, which would wait for any blocking task still running.
    std::process::exit(0);
}

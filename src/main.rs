use clap::Parser;
use redis_operator::cli::{execute, Cli};

#[tokio::main]
async fn main() {
    if let Err(error) = execute(Cli::parse()).await {
        eprintln!("redis-operator: {error}");
        std::process::exit(1);
    }
}

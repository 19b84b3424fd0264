//! `weir-echo`: an HTTP server that replies with a JSON description of each request.

use std::net::SocketAddr;

use clap::Parser;

/// Echo server for the quickstart and tests.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Name reported in every reply (field `server`).
    #[arg(long, default_value = "echo")]
    name: String,
}

fn main() {
    let args = Args::parse();
    let server = match weir_loadtest::echo::EchoServer::start_on(args.listen, &args.name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-echo: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "weir-echo {} listening on http://{}",
        args.name,
        server.addr()
    );
    loop {
        std::thread::park();
    }
}

//! The `tideway` binary: `tideway server` runs the control plane; every other subcommand is
//! the command-line client of its REST API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tideway::server::{Server, ServerConfig};
use tideway::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tideway",
    version,
    about = "Tideway: an elastic microservice platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane.
    Server {
        #[command(flatten)]
        config: Box<ServerConfig>,
        /// Log format on stderr.
        #[arg(long, env = "TIDEWAY_LOG_FORMAT", value_enum, default_value = "pretty")]
        log_format: LogFormat,
    },
    /// Run a gateway in its own process, fed by a control plane over gRPC.
    Gateway {
        #[command(flatten)]
        args: tideway::remote_gateway::GatewayArgs,
    },
    /// Supervise one instance of the local runtime (started by the control plane).
    #[command(hide = true)]
    Shim {
        /// The instance directory holding `spec.json`.
        #[arg(long)]
        dir: PathBuf,
    },
    #[command(flatten)]
    Client(tideway_cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The shim is a small synchronous process per instance: no tokio runtime, no tracing.
    if let Command::Shim { dir } = cli.command {
        return tideway::runtime::local::shim::run(dir);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server { config, log_format } => serve(*config, log_format).await,
            Command::Gateway { args } => tideway::remote_gateway::run(args).await,
            Command::Client(command) => tideway_cli::run(command).await,
            Command::Shim { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig, log_format: LogFormat) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(log_format)?;
    let server = Server::build(config).await?;
    let addr = server.api_addr()?;
    // Scripts and tests read this line to find a port chosen with `:0`.
    println!(
        "tideway: gateway listening on http://{}",
        server.gateway_addr()
    );
    println!("tideway: grpc listening on http://{}", server.grpc_addr()?);
    println!("tideway: otlp listening on http://{}", server.otlp_addr());
    println!(
        "tideway: eureka listening on http://{}/eureka/",
        server.eureka_addr()
    );
    println!(
        "tideway: consul listening on http://{}",
        server.consul_addr()
    );
    println!("tideway: api listening on http://{addr}");
    tracing::info!(%addr, "ServerStarted");
    let shutdown = CancellationToken::new();
    tokio::spawn(tideway::server::stop_on_signal(shutdown.clone()));
    server.run(shutdown).await
}

//! `eddy`: one binary for the servers and the shell. Thin: parsing here, one
//! file per command group under `cmd/`.

mod cmd;
mod config;
mod format;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: a memory-speed virtual distributed storage layer"
)]
struct Cli {
    /// Config file (TOML). See `eddy --print-sample-config`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Master address (HOST:PORT). Default: EDDY_MASTER, then the config file.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    master: Option<String>,
    /// Print a commented configuration template and exit.
    #[arg(long)]
    print_sample_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master.
    Master,
    /// Run a worker (caches blocks, serves reads and writes).
    Worker,
    /// Run a whole cluster in this process with embedded defaults.
    Local(cmd::local::LocalArgs),
    /// Namespace commands against a running master.
    #[command(subcommand)]
    Fs(cmd::fs::FsCommand),
    /// Show the cluster at a glance.
    Report,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_sample_config {
        print!("{}", config::SAMPLE);
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("eddy: no command given; try `eddy --help`");
        return ExitCode::from(2);
    };
    let cfg = match config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eddy: {e}");
            return ExitCode::from(2);
        }
    };
    let explicit_master = cli
        .master
        .or_else(|| std::env::var("EDDY_MASTER").ok().filter(|s| !s.is_empty()));
    let master = explicit_master
        .clone()
        .unwrap_or_else(|| cfg.client.master.clone());
    if matches!(
        command,
        Command::Master | Command::Worker | Command::Local(_)
    ) {
        // Servers hold an fd per connection, segment and block file: the
        // usual soft limit of 1,024 is far too low for them.
        if let Err(e) = eddy_worker::conn::raise_nofile_limit() {
            eprintln!("eddy: warning: cannot raise the open-file limit to its hard limit: {e}");
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eddy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match command {
            Command::Master => cmd::master::run(cfg.master).await,
            Command::Worker => {
                let mut w = cfg.worker;
                if let Some(m) = explicit_master {
                    w.master = m;
                }
                cmd::worker::run(w).await
            }
            Command::Local(args) => cmd::local::run(cfg.master, args).await,
            Command::Fs(c) => cmd::fs::run(&master, cfg.client.short_circuit, c).await,
            Command::Report => cmd::report::run(&master).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eddy: {e}");
            ExitCode::FAILURE
        }
    }
}

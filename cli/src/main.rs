//! `eddy`: one binary for the servers and the shell. Thin: parsing here, one
//! file per command group under `cmd/`.

mod cmd;
mod config;
mod error;
mod format;
mod out;
mod uri;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use error::CliError;

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: a memory-speed virtual distributed storage layer",
    after_help = "The master is, first to last: the master named by eddy://HOST:PORT/PATH \
arguments (all of a command's must name the same one), --master, EDDY_MASTER, the config \
file's [client] master, 127.0.0.1:19998.\n\n\
Exit status: 0 success; 1 the command failed (stderr has one line, `eddy: MESSAGE (CODE)`, \
CODE from docs/ERRORS.md); 2 a usage error (bad arguments, unreadable config file).\n\n\
TLS: a client dials the master and workers over TLS when it has a CA to trust: EDDY_TLS_CA \
(a PEM file), else the config file's [security] tls_ca; its tls_cert and tls_key are the \
client certificate for mutual TLS. An https://HOST:PORT master address insists on TLS. \
`eddy local --tls` generates a CA and prints what to set."
)]
struct Cli {
    /// Config file (TOML). See `eddy --print-sample-config`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Master address (HOST:PORT). Default: EDDY_MASTER, then the config
    /// file. An `eddy://HOST:PORT/...` path argument overrides it.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    master: Option<String>,
    /// The longest any one call to the master or a worker may wait for its
    /// answer, connecting included (e.g. 500ms, 30s, 2m; default 60s). Past
    /// it the command fails with DEADLINE_EXCEEDED.
    #[arg(long, global = true, value_name = "DURATION", env = "EDDY_TIMEOUT", value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,
    /// How long a complete file's metadata may be reused without asking the
    /// master (e.g. 0, 500ms, 1s; default 1s): the longest another client's
    /// delete, rename or rewrite may go unseen by this command's reads. Its
    /// own changes are always seen at once. 0 caches nothing.
    #[arg(long, global = true, value_name = "DURATION", env = "EDDY_METADATA_CACHE", value_parser = parse_cache)]
    metadata_cache: Option<std::time::Duration>,
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
    #[command(
        subcommand,
        after_help = "PATH arguments are `/path` or `eddy://HOST:PORT/path` (the master \
they name wins over --master). Exit status: 0 success; 1 failed (one stderr line ending in \
its code); 2 usage error."
    )]
    Fs(cmd::fs::FsCommand),
    /// Show the cluster at a glance.
    Report,
    /// Sign and inspect credentials for `authentication = "token"`.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, error::ArgError> {
    match cmd::fs::parse_duration_ms(s)? {
        ms if ms >= 1 => Ok(std::time::Duration::from_millis(ms as u64)),
        _ => Err(error::ArgError::TimeoutTooShort(s.to_string())),
    }
}

fn parse_cache(s: &str) -> Result<std::time::Duration, error::ArgError> {
    Ok(std::time::Duration::from_millis(
        cmd::fs::parse_duration_ms(s)?.max(0) as u64,
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(t) = cli.timeout {
        cmd::set_timeout(t);
    }
    if let Some(t) = cli.metadata_cache {
        cmd::set_metadata_cache(t);
    }
    if cli.print_sample_config {
        // As any output: a closed pipe ends it quietly (`| head`).
        out::line(format_args!("{}", config::SAMPLE.trim_end_matches('\n')));
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!(
            "eddy: {}",
            CliError::usage("no command given; try `eddy --help`")
        );
        return ExitCode::from(2);
    };
    let cfg = match config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eddy: {}", CliError::usage(e.to_string()));
            return ExitCode::from(2);
        }
    };
    cmd::set_security(cfg.security.clone());
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
    if matches!(command, Command::Fs(_) | Command::Report) {
        // Client commands log only when asked (EDDY_LOG=warn shows, say,
        // a read falling back from RDMA to TCP); their output stays clean.
        if std::env::var("EDDY_LOG").is_ok_and(|v| !v.is_empty()) {
            cmd::init_logging();
        }
        if let Err(e) = cmd::set_transport(&cfg.client.transport) {
            eprintln!("eddy: {e}");
            return ExitCode::from(e.exit_status());
        }
        match cmd::client_tls(&cfg.security) {
            Ok(tls) => cmd::set_tls(tls),
            Err(e) => {
                eprintln!("eddy: {e}");
                return ExitCode::from(e.exit_status());
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = CliError::new(
                eddy_proto::EddyCode::Internal,
                format!("cannot start the runtime: {e}"),
            );
            eprintln!("eddy: {e}");
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
            Command::Token(c) => cmd::token::run(&cfg.master, c),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eddy: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

//! The `tollgate` command line.

mod admin;
mod events;
pub(crate) mod http;
mod keygen;
mod progress;
pub mod publish;
mod sign;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Entitlement-aware content-download gateway: signed, time-limited downloads from a directory or S3",
    long_about = None,
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, the embedded default is used:
    /// blobs under ./data/blobs, secrets created under ./data/secrets.
    #[arg(long, short = 'c', global = true, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Set a configuration key, overriding file and environment
    /// (e.g. --set server.listen=127.0.0.1:8081). Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: public listener (downloads) and admin listener (health).
    Serve(ServeArgs),
    /// Mint a signed, time-limited download URL.
    Sign(sign::SignArgs),
    /// Check a signed URL and explain why it is valid or not.
    Verify(sign::VerifyArgs),
    /// Generate a new signing key (for the key ring or a rotation).
    Keygen(keygen::KeygenArgs),
    /// Manage the catalog through the admin API of a running gateway.
    Admin(admin::AdminArgs),
    /// Upload a build into a release and publish it (for CI). Exit codes: 0
    /// done, 1 refused, 2 usage, 3 transient failure (retry later), 4 the
    /// file did not arrive intact.
    Publish(publish::PublishArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Public listener address (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listener address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
}

/// Parse arguments, run the command, and turn the outcome into an exit code:
/// 0 success, 1 a URL that `verify` found invalid or a request the admin API
/// refused, 2 usage or configuration errors, 3 a failure while running.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate: {}", message(&e));
            ExitCode::from(if is_usage_or_configuration(&e) { 2 } else { 3 })
        }
    }
}

/// A malformed argument that clap's own parsing does not catch.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Whether any error in the chain is the operator's to fix in the command
/// line or the configuration (a bad setting, secret or key): exit 2, not 3.
fn is_usage_or_configuration(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<config::ConfigError>()
            || c.is::<config::secret::SecretError>()
            || c.is::<crate::signing::KeyRingError>()
            || c.is::<crate::cdn::ProfileError>()
            || c.is::<UsageError>()
    })
}

/// The error and its causes on one line, each once: an error whose own text
/// already ends with its cause's (`cannot read …: No such file or directory`)
/// does not repeat it.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = parse_sets(&cli.set)?;
    match cli.command {
        Command::Serve(args) => {
            if let Some(addr) = args.listen {
                overrides.push(("server.listen".into(), addr));
            }
            if let Some(addr) = args.admin_listen {
                overrides.push(("admin.listen".into(), addr));
            }
            let config = load_config(cli.config.as_deref(), &overrides)?;
            serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign(args) => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            sign::sign(&config, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            sign::verify(&config, &args)
        }
        Command::Admin(args) => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            admin::admin(&config, &args)
        }
        Command::Publish(args) => {
            let config = load_config(cli.config.as_deref(), &overrides)?;
            publish::publish(&config, &args)
        }
        Command::Keygen(args) => {
            keygen::keygen(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_sets(sets: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').ok_or_else(|| UsageError(format!("--set {s:?}: expected KEY=VALUE")))?;
            Ok((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

fn load_config(file: Option<&std::path::Path>, overrides: &[(String, String)]) -> anyhow::Result<Config> {
    for name in config::unmapped_env(std::env::vars()) {
        eprintln!("warning: {name} is not a configuration setting; ignored");
    }
    Ok(config::load(file, std::env::vars(), overrides)?)
}

fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(config.server.blocking_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = crate::app::Gateway::bind(&config).await?;
        gateway.run(crate::app::shutdown_signal()).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every command says what it does and every option what it is for
    /// (issue 20, item 12: several had an empty line in `--help`).
    #[test]
    fn every_command_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(here.clone());
                }
                for arg in sub.get_arguments().filter(|a| a.get_long().is_some() && !a.is_hide_set()) {
                    let builtin = matches!(
                        arg.get_action(),
                        clap::ArgAction::Help
                            | clap::ArgAction::HelpShort
                            | clap::ArgAction::HelpLong
                            | clap::ArgAction::Version
                    );
                    if arg.get_help().is_none() && !builtin {
                        missing.push(format!("{here} --{}", arg.get_long().unwrap_or_default()));
                    }
                }
                walk(sub, &here, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "tollgate", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:#?}");
    }
}

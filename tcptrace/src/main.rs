use std::process::ExitCode;

use clap::Parser as _;
use tcptrace::{UsageError, cli::Args};

fn main() -> ExitCode {
    // Rust starts with SIGPIPE ignored, so a closed stdout shows up as EPIPE,
    // which the writers treat as a normal end.
    let args = Args::parse();
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if let Some(level) = args.log_level {
        logger.filter_level(level);
    }
    logger.init();
    let res = if args.read.is_some() {
        tcptrace::offline::run(&args, &mut tcptrace::output::RawStdout)
    } else {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(tcptrace::live::run(&args)),
            Err(e) => Err(e.into()),
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcptrace: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

//! The `tongban` binary: parse the command line, install the crypto provider, run.

use std::process::ExitCode;

use clap::Parser as _;

// A request makes many small, short-lived allocations: glibc's malloc spent about a
// sixth of a lookup's CPU on them (docs/performance.md, "Where a full lookup's CPU
// goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = gateway::cli::Cli::parse();
    gateway::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tongban: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(gateway::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tongban: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

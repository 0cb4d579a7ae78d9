//! `cargo run [-- OPTIONS] [-- EXTRA EMULATOR ARGS]`: build the image, boot it, stream the serial log,
//! exit with the verdict. See `cargo run -- --help` and docs/testing.md.

use std::process::ExitCode;

use xtask::cli::{self, Cli};
use xtask::{runner, EXIT_USAGE};

fn main() -> ExitCode {
    let code = match cli::parse_args(std::env::args().skip(1)) {
        Err(e) => {
            eprintln!("runner: {e}\n\n{}", cli::USAGE);
            EXIT_USAGE
        }
        Ok(Cli::Help) => {
            print!("{}", cli::USAGE);
            0
        }
        Ok(Cli::Iso { append }) => match runner::build_hardware_iso(&append, None, true) {
            Ok((path, cmdline)) => {
                let shown = path
                    .strip_prefix(std::env::current_dir().unwrap_or_default())
                    .unwrap_or(&path)
                    .to_path_buf();
                println!("{}", cli::usb_instructions(&shown, &cmdline));
                0
            }
            Err(e) => {
                eprintln!("runner: {e}");
                e.exit_code()
            }
        },
        Ok(Cli::BenchHelp) => {
            print!("{}", xtask::bench::USAGE);
            0
        }
        Ok(Cli::Bench(spec)) => xtask::bench::run_bench(&spec),
        Ok(Cli::SoakHelp) => {
            print!("{}", xtask::soak::USAGE);
            0
        }
        Ok(Cli::Soak(spec)) => xtask::soak::run_soak(&spec),
        Ok(Cli::MutantsHelp) => {
            print!("{}", xtask::mutants::USAGE);
            0
        }
        Ok(Cli::Mutants(spec)) => xtask::mutants::run_mutants(&spec),
        Ok(Cli::Run(spec)) => match xtask::run(&spec) {
            Ok(outcome) => {
                eprint!("{}", outcome.report());
                outcome.exit_code()
            }
            Err(e) => {
                eprintln!("runner: {e}");
                e.exit_code()
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

//! The `tollgate` binary: all behaviour lives in the library.

fn main() -> std::process::ExitCode {
    tollgate::cli::run()
}

//! The `tollgate` binary: all behaviour lives in the library.

/// jemalloc, whose background thread gives freed memory back to the system
/// (glibc's malloc kept tens of MiB after a thousand slow downloads had
/// left; see `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tollgate::cli::run()
}

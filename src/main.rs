//! The `sdnbed` binary: parses the command line and dispatches to `sdnbed::cli`.

fn main() {
    // Die quietly on a closed pipe (`sdnbed compare … | head`) instead of panicking in print!.
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(sdnbed::cli::main());
}

//! `envoy-presign-config`: checks a filter configuration and shows the
//! presigned URL the filter would produce for a request, with the filter's own
//! code (see `envoy_presign::cli`). A host tool: the filter build
//! (`--target wasm32-wasip1`) compiles every binary of the crate, so there it
//! is an empty program.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use std::io::Write as _;

    // `args_os`, not `args` (which panics on an argument that is not UTF-8):
    // `run` answers such an argument with a usage error (exit 2) naming it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let read = |path: &str| std::fs::read(path);
    // As the filter reads the Wasm VM's environment (`std::env::var`).
    let env = |k: &str| std::env::var(k).ok();
    let io = envoy_presign::cli::Io {
        read: &read,
        env: &env,
        now: std::time::SystemTime::now(),
    };
    let out = envoy_presign::cli::run(&args, &io);
    // A closed pipe (`| head`) is not worth a panic.
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    std::process::ExitCode::from(out.code)
}

#[cfg(target_arch = "wasm32")]
fn main() {}

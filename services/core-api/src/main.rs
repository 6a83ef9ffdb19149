/// mimalloc rather than the system allocator: a request allocates many small,
/// short-lived buffers across two worker threads, where glibc malloc showed
/// up as a fifth of the CPU profile of POST /transactions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("core-api", core_api::build).await
}

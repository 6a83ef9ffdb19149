/// mimalloc rather than the system allocator, as in core-api: decoding
/// Redis replies and building PSP requests allocates many small buffers,
/// and glibc malloc/free were about 30 % of the connector's instructions
/// per settled payment (callgrind, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("psp-connector", psp_connector::build).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("core-api", core_api::build).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("psp-connector", psp_connector::build).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("psp-sandbox", psp_sandbox::build).await
}

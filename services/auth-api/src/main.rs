#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("auth-api", auth_api::build).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("webhook-dispatcher", webhook_dispatcher::build).await
}

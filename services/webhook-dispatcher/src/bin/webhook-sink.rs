#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("webhook-sink", webhook_dispatcher::sink::build).await
}

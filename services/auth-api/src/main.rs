use platform::ConfigError;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::main("auth-api", |config, runtime, shutdown| async move {
        let started = auth_api::build(config, runtime, shutdown).await;
        // A bad AUTH_USERS_FILE is found while building; report it like any
        // other config error: one line, exit code 2.
        if let Err(error) = &started
            && let Some(config_error) = error.downcast_ref::<ConfigError>()
        {
            platform::config::exit_with(config_error);
        }
        started
    })
    .await
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_patients::App::from_env().await?);
    medrec_shared::lambda::run(move |req| app.clone().handle_guarded(req)).await
}

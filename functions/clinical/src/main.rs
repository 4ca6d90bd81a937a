#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_clinical::boot(&medrec_shared::lambda::settings_from_env()?).await?);
    medrec_shared::lambda::run(move |req| medrec_shared::lambda::handle_guarded(app.clone(), req)).await
}

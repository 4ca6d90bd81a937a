#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_validation::boot(&medrec_edge::lambda::settings_from_env()?).await?);
    medrec_edge::lambda::run(move |req| medrec_edge::lambda::handle_guarded(app.clone(), req)).await
}

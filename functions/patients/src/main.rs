#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_patients::App::from_env().await?);
    lambda_http::run(lambda_http::service_fn(move |req| app.clone().handle_guarded(req))).await
}

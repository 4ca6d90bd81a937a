#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_compliance_report::boot(&medrec_edge::lambda::settings_from_env()?).await?);
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |e| app.clone().handle(e))).await
}

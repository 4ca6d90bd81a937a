#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = medrec_patients::App::from_env().await?;
    let app = &app;
    lambda_http::run(lambda_http::service_fn(move |req| app.handle(req))).await
}

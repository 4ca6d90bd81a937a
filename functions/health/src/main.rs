#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = std::sync::Arc::new(medrec_health::boot(&medrec_edge::lambda::settings_from_env()?).await?);
    medrec_edge::lambda::run(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
    })
    .await
}

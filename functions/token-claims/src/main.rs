#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    medrec_edge::log::init();
    lambda_http::lambda_runtime::run(lambda_http::service_fn(medrec_token_claims::handle)).await
}

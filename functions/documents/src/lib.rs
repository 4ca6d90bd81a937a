//! The documents Lambda: DocumentReference (FHIR REST, content inline or by
//! presigned upload) and Binary (the content, decrypted and verified).
//! Routes only; the REST edge is `medrec_edge::rest::documents`, the use
//! cases `medrec_edge::service::documents`.

use lambda_http::{Body, Response};
use medrec_edge::audit::AuditEntry;
use medrec_edge::config::Settings;
use medrec_edge::error::Error;
use medrec_edge::lambda::{Api, Ctx, Route};
use medrec_edge::rest::documents::{DocumentRest, Uploads};
use medrec_edge::runtime::{BootError, Runtime};

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = medrec_edge::rest::documents::ROUTES;

pub struct App {
    rt: Runtime,
    documents: DocumentRest,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    let documents = settings.documents()?;
    medrec_edge::fhir::validator::model();
    let rt = Runtime::from_config(config).await?;
    let documents = DocumentRest::new(&rt, documents, Uploads::Offered);
    Ok(App { rt, documents })
}

impl App {}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn negotiates_content(&self, route: &Route) -> bool {
        route.path == "/fhir/Binary/{id}"
    }

    async fn serve<'a>(&'a self, ctx: Ctx<'a>, audit: &'a mut AuditEntry) -> Result<Response<Body>, Error> {
        self.documents.serve(&self.rt, ctx, audit).await
    }
}

//! The consent Lambda: FHIR REST for Consent, in the patient's compartment
//! like every record. Status changes raise ConsentGranted / ConsentRevoked;
//! enforcement happens in every function at access time
//! (`medrec_shared::consent`). Routing only; the use cases are shared.

use lambda_http::{Body, Response};
use medrec_shared::audit::AuditEntry;
use medrec_shared::config::Config;
use medrec_shared::error::Error;
use medrec_shared::lambda::{Api, Ctx, Route};
use medrec_shared::rest;
use medrec_shared::runtime::{BootError, Runtime};

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/Consent", interaction: "create" },
    Route { method: "GET", path: "/fhir/Consent", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Consent/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Consent/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Consent/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Consent/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Consent/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Consent/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Consent/{id}/_history/{vid}", interaction: "vread" },
];

pub struct App {
    rt: Runtime,
}

impl App {
    /// Cold start in Lambda: config from the environment, validated.
    pub async fn from_env() -> Result<Self, BootError> {
        medrec_shared::log::init();
        Self::new(Config::from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, BootError> {
        medrec_shared::fhir::validator::model();
        Ok(App { rt: Runtime::from_config(config).await? })
    }
}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn serve<'a>(
        &'a self,
        ctx: Ctx<'a>,
        audit: &'a mut AuditEntry,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        rest::serve_compartment_record(&self.rt, ctx, audit)
    }
}

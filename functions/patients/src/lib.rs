//! The patients Lambda: FHIR R4 REST for Patient, plus the CapabilityStatement.
//! Routing and HTTP mapping only; the use cases live in `medrec_shared::service`.

use lambda_http::{Body, Request, Response};
use medrec_shared::audit::AuditEntry;
use medrec_shared::config::Config;
use medrec_shared::error::Error;
use medrec_shared::fhir::capability::capability_statement;
use medrec_shared::http;
use medrec_shared::lambda::{self, Api, Ctx, Route};
use medrec_shared::rest;
use medrec_shared::runtime::{BootError, Runtime};
use medrec_shared::service::clinical_search::EVERYTHING_MAX_PAGE;
use medrec_shared::service::patients::Stored;
use std::convert::Infallible;

/// Every route this function serves. template.yaml declares the same routes;
/// a test keeps the two in step.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/fhir/metadata", interaction: "capabilities" },
    Route { method: "POST", path: "/fhir/Patient", interaction: "create" },
    Route { method: "GET", path: "/fhir/Patient", interaction: "search-type" },
    Route { method: "PUT", path: "/fhir/Patient", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Patient", interaction: "delete" },
    Route { method: "POST", path: "/fhir/Patient/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Patient/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Patient/{id}", interaction: "update" },
    Route { method: "PATCH", path: "/fhir/Patient/{id}", interaction: "patch" },
    Route { method: "DELETE", path: "/fhir/Patient/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Patient/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "GET", path: "/fhir/Patient/{id}/{operation}", interaction: "operation" },
];

pub struct App {
    rt: Runtime,
}

impl App {
    /// Cold start in Lambda: config from the environment, validated.
    pub async fn from_env() -> Result<Self, BootError> {
        Self::new(medrec_shared::lambda::config_from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, BootError> {
        Ok(App { rt: Runtime::from_config(config).await? })
    }

    /// `lambda::handle` behind a panic guard (what `main` runs).
    pub async fn handle_guarded(self: std::sync::Arc<Self>, req: Request) -> Result<Response<Body>, Infallible> {
        lambda::handle_guarded(self, req).await
    }
}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn public(&self, route: &Route, base: &str) -> Option<Response<Body>> {
        (route.interaction == "capabilities")
            .then(|| http::response(200, Some(&capability_statement(base, medrec_shared::api::resources())), &[]))
    }

    fn serve<'a>(
        &'a self,
        ctx: Ctx<'a>,
        audit: &'a mut AuditEntry,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        self.serve_patient(ctx, audit)
    }
}

impl App {
    async fn serve_patient(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let Ctx { route, params, req, caller, base } = ctx;
        let svc = &self.rt.services;
        let max = self.rt.config.max_body_bytes;
        let id = rest::instance_id(params.first().copied(), req.uri().path())?;
        let resource_response =
            |status, s: &Stored, write| rest::resource_response(req, status, base, "Patient", s, write);
        match (route.method, route.interaction, id) {
            ("POST", "create", None) => {
                let body = http::json_resource(req, max, "Patient")?;
                if let Some(existing) = rest::conditional_create(&self.rt, req, caller, "Patient").await? {
                    return Ok(resource_response(200, &existing, false));
                }
                let stored = svc.create_patient(caller, body, audit).await?;
                Ok(resource_response(201, &stored, true))
            }
            ("GET", "read", Some(id)) => Ok(resource_response(200, &svc.read_patient(caller, id, audit).await?, false)),
            ("GET", "vread", Some(id)) => {
                let vid = rest::version_id(params[1])?;
                Ok(resource_response(200, &svc.vread_patient(caller, id, vid, audit).await?, false))
            }
            ("PUT", "update", Some(id)) => {
                let body = http::json_resource(req, max, "Patient")?;
                let if_match = http::if_match(req)?;
                Ok(resource_response(200, &svc.update_patient(caller, id, body, if_match, audit).await?, true))
            }
            ("PATCH", "patch", Some(id)) => {
                let patch = http::json_patch_body(req, max)?;
                let if_match = http::if_match(req)?;
                Ok(resource_response(
                    200,
                    &svc.patch_record(caller, "Patient", id, &patch, if_match, audit).await?,
                    true,
                ))
            }
            ("DELETE", "delete", Some(id)) => {
                svc.delete_patient(caller, id, http::if_match(req)?, audit).await?;
                Ok(http::response(204, None, &[]))
            }
            ("PUT", "update", None) => {
                let body = http::json_resource(req, max, "Patient")?;
                let (status, stored) = rest::conditional_update(&self.rt, req, caller, "Patient", body, audit).await?;
                Ok(resource_response(status, &stored, true))
            }
            ("DELETE", "delete", None) => {
                rest::conditional_delete(&self.rt, req, caller, "Patient", audit).await?;
                Ok(http::response(204, None, &[]))
            }
            ("GET", "operation", Some(id)) if params[1] == "$everything" => {
                let (count, cursor) = rest::paging_params(req, EVERYTHING_MAX_PAGE)?;
                let r = svc.everything(caller, id, count, cursor.as_deref(), audit).await?;
                let path = format!("/fhir/Patient/{id}/$everything");
                Ok(rest::searchset_response(base, &path, r, &rest::ResultParams::default(), vec![]))
            }
            ("GET", "history-instance", Some(id)) => {
                let (count, cursor) = rest::history_params(req)?;
                let h = svc.patient_history(caller, id, count, cursor.as_deref(), audit).await?;
                Ok(rest::history_response(base, "Patient", Some(id), h))
            }
            (_, "search-type", None) => {
                let query = rest::search_query(route.method, req, max)?;
                rest::search_response(&self.rt, caller, "Patient", query, base, audit).await
            }
            _ => Err(Error::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        let route = |m, p| lambda::route(ROUTES, m, p);
        assert_eq!(route("GET", "/fhir/Patient/abc").unwrap().0.interaction, "read");
        assert_eq!(route("GET", "/fhir/Patient/abc/_history/2").unwrap().1, vec!["abc", "2"]);
        assert_eq!(route("POST", "/fhir/Patient/_search").unwrap().0.interaction, "search-type");
        assert!(matches!(route("POST", "/fhir/Patient/abc"), Err(Error::MethodNotAllowed)));
        assert!(matches!(route("GET", "/fhir/Observation"), Err(Error::NotFound)));
        assert!(route("POST", "/fhir/Patient/$validate").is_err(), "served by the validation function");
    }
}

//! The clinical Lambda: FHIR REST for Immunization and Observation, records
//! that live in a patient's compartment. Routing and HTTP mapping only; the
//! use cases are `Services::*_record` in `medrec_shared::service::clinical`.

use lambda_http::{Body, Response};
use medrec_shared::audit::AuditEntry;
use medrec_shared::config::Config;
use medrec_shared::error::Error;
use medrec_shared::fhir::bundle::{self, SearchPage};
use medrec_shared::fhir::primitives::is_id;
use medrec_shared::http;
use medrec_shared::lambda::{Api, Ctx, Route};
use medrec_shared::rest;
use medrec_shared::runtime::{BootError, Runtime};

/// Every route this function serves; template.yaml declares the same.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/fhir/Immunization", interaction: "create" },
    Route { method: "GET", path: "/fhir/Immunization", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Immunization/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Immunization/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Immunization/{id}", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Immunization/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Immunization/{id}/_history/{vid}", interaction: "vread" },
    Route { method: "POST", path: "/fhir/Observation", interaction: "create" },
    Route { method: "GET", path: "/fhir/Observation", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/Observation/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Observation/{id}", interaction: "read" },
    Route { method: "PUT", path: "/fhir/Observation/{id}", interaction: "update" },
    Route { method: "DELETE", path: "/fhir/Observation/{id}", interaction: "delete" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history", interaction: "history-instance" },
    Route { method: "GET", path: "/fhir/Observation/{id}/_history/{vid}", interaction: "vread" },
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

    async fn serve_record(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let Ctx { route, params, req, caller, base } = ctx;
        // The type is the route's literal segment: /fhir/{type}/...
        let ty = route.path.split('/').nth(2).unwrap_or_default();
        let svc = &self.rt.services;
        let max = self.rt.config.max_body_bytes;
        let id = match params.first() {
            Some(id) if is_id(id) => Some(*id),
            Some(_) => return Err(Error::BadRequest("resource id is not a valid FHIR id".into())),
            None => None,
        };
        let respond = |status, s: &_, location| rest::resource_response(status, base, ty, s, location);
        match (route.interaction, id) {
            ("create", None) => {
                let body = http::json_resource(req, max, ty)?;
                Ok(respond(201, &svc.create_record(caller, ty, body, audit).await?, true))
            }
            ("read", Some(id)) => Ok(respond(200, &svc.read_record(caller, ty, id, None, audit).await?, false)),
            ("vread", Some(id)) => {
                let vid = rest::version_id(params[1])?;
                Ok(respond(200, &svc.read_record(caller, ty, id, Some(vid), audit).await?, false))
            }
            ("update", Some(id)) => {
                let body = http::json_resource(req, max, ty)?;
                let if_match = http::if_match(req)?;
                Ok(respond(200, &svc.update_record(caller, ty, id, body, if_match, audit).await?, true))
            }
            ("delete", Some(id)) => {
                svc.delete_record(caller, ty, id, http::if_match(req)?, audit).await?;
                Ok(http::response(204, None, &[]))
            }
            ("history-instance", Some(id)) => {
                let (count, cursor) = rest::history_params(req)?;
                let h = svc.record_history_of(caller, ty, id, count, cursor.as_deref(), audit).await?;
                Ok(rest::history_response(base, ty, id, h))
            }
            ("search-type", None) => {
                let q = if route.method == "POST" { http::form_body(req, max)? } else { http::query(req)? };
                let r = svc.search_records(caller, ty, q, audit).await?;
                let page = SearchPage {
                    self_link: format!("{base}/fhir/{ty}"),
                    next_link: r.next_cursor.map(|c| format!("{base}/fhir/{ty}?_cursor={c}")),
                    total: r.total,
                    entries: r
                        .resources
                        .into_iter()
                        .map(|s| (format!("{base}/fhir/{ty}/{}", s.id), s.resource))
                        .collect(),
                };
                Ok(http::response(200, Some(&bundle::searchset(page)), &[]))
            }
            _ => Err(Error::NotFound),
        }
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
        self.serve_record(ctx, audit)
    }
}

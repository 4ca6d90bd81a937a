//! The audit Lambda: AuditEvent search for auditors, and a patient's
//! accounting of disclosures as a Bundle or a human-readable report.
//! Routing and HTTP mapping only; the use cases are
//! `medrec_edge::service::audit_search`.

mod report;

use lambda_http::{Body, Response};
use medrec_edge::audit::AuditEntry;
use medrec_edge::config::Settings;
use medrec_edge::error::Error;
use medrec_edge::fhir::primitives::is_id;
use medrec_edge::http;
use medrec_edge::lambda::{Api, Ctx, Route};
use medrec_edge::rest::{self, ResultParams};
use medrec_edge::runtime::{BootError, Runtime};
use medrec_edge::service::records::{SearchResult, Stored};

/// Every route this function serves; template.yaml declares the same. The
/// literal `$disclosures` segment wins over the patients function's
/// `/fhir/Patient/{id}/{operation}`.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/fhir/AuditEvent", interaction: "search-type" },
    Route { method: "POST", path: "/fhir/AuditEvent/_search", interaction: "search-type" },
    Route { method: "GET", path: "/fhir/Patient/{id}/$disclosures", interaction: "operation" },
    Route { method: "POST", path: "/fhir/AuditEvent/{id}/$review", interaction: "operation" },
];

pub struct App {
    rt: Runtime,
}

/// The report is HTML when asked by `_format=html` or an Accept that
/// prefers it; FHIR JSON otherwise.
fn wants_html(format: Option<&str>, accept: Option<&str>) -> bool {
    format == Some("html")
        || accept.is_some_and(|a| a.split(',').next().is_some_and(|p| p.trim().starts_with("text/html")))
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    Ok(App { rt: Runtime::from_config(config).await? })
}

impl App {
    async fn disclosures(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let id = ctx.params.first().copied().filter(|id| is_id(id)).ok_or(Error::NotFound)?;
        let (mut start, mut end, mut format) = (None, None, None);
        for (k, v) in http::query(ctx.req)? {
            match k.as_str() {
                "start" => start = Some(v),
                "end" => end = Some(v),
                "_format" if matches!(v.as_str(), "html" | "json") => format = Some(v),
                _ => return Err(Error::BadRequest("$disclosures takes start, end and _format (html or json)".into())),
            }
        }
        let events = self.rt.services.disclosures(ctx.caller, id, start.as_deref(), end.as_deref(), audit).await?;
        if wants_html(format.as_deref(), http::header(ctx.req, "accept")) {
            let page = report::html(id, start.as_deref(), end.as_deref(), &events);
            return Ok(http::html_response(200, page));
        }
        let resources: Vec<Stored> = events
            .into_iter()
            .map(|e| Stored::new(e["id"].as_str().unwrap_or_default().to_owned(), 1, "", e))
            .collect();
        let r = SearchResult { total: Some(resources.len()), resources, next_cursor: None, notes: vec![] };
        let path = format!("/fhir/Patient/{id}/$disclosures");
        Ok(rest::searchset_response(ctx.base, &path, r, &ResultParams::default(), vec![]))
    }
}

impl App {
    /// `POST /fhir/AuditEvent/{id}/$review` with Parameters `outcome`
    /// (valueCode) and `note` (valueString, optional).
    async fn review(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let id = ctx.params.first().copied().filter(|id| is_id(id)).ok_or(Error::NotFound)?;
        let body = http::json_resource(ctx.req, self.rt.config.max_body_bytes, "Parameters")?;
        let param = |name: &str, key: &str| {
            body["parameter"].as_array().into_iter().flatten().find(|p| p["name"] == name).and_then(|p| p[key].as_str())
        };
        let outcome = param("outcome", "valueCode")
            .ok_or_else(|| Error::BadRequest("Parameters needs outcome (valueCode)".into()))?;
        self.rt.services.review_break_glass(ctx.caller, id, outcome, param("note", "valueString"), audit).await?;
        let done = medrec_edge::fhir::outcome::Issue::information(
            "informational",
            format!("review of AuditEvent/{id} recorded"),
        );
        Ok(http::response(200, Some(&medrec_edge::fhir::outcome::operation_outcome(&[done])), &[]))
    }
}

impl Api for App {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn negotiates_content(&self, route: &Route) -> bool {
        route.path == "/fhir/Patient/{id}/$disclosures"
    }

    async fn serve<'a>(&'a self, ctx: Ctx<'a>, audit: &'a mut AuditEntry) -> Result<Response<Body>, Error> {
        match ctx.route.interaction {
            "operation" if ctx.route.method == "POST" => self.review(ctx, audit).await,
            "operation" => self.disclosures(ctx, audit).await,
            _ => {
                let max = self.rt.config.max_body_bytes;
                let query = rest::search_query(ctx.route.method, ctx.req, max)?;
                let r = self.rt.services.search_audit(ctx.caller, query, audit).await?;
                Ok(rest::searchset_response(ctx.base, "/fhir/AuditEvent", r, &ResultParams::default(), vec![]))
            }
        }
    }
}

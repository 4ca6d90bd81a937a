//! The validation Lambda: `$validate` for every R4 resource type, against
//! the base definitions, `meta.profile` and a requested profile. Routing
//! and HTTP mapping only; the use case is `Services::validate_resource`.

use lambda_http::{Body, Response};
use medrec_edge::audit::AuditEntry;
use medrec_edge::config::Settings;
use medrec_edge::error::Error;
use medrec_edge::fhir::primitives::is_id;
use medrec_edge::http;
use medrec_edge::lambda::{Api, Ctx, Route};
use medrec_edge::runtime::{BootError, Runtime};

/// Every route this function serves; template.yaml declares the same. API
/// Gateway sends a more specific route (`/fhir/Patient/_search`) to its own
/// function first.
pub const ROUTES: &[Route] = &[
    // The operation (`$validate`) is the second segment: the variable is
    // named `{id}` there as on every route at that position (template.yaml).
    Route { method: "POST", path: "/fhir/{type}/{id}", interaction: "operation" },
    Route { method: "POST", path: "/fhir/{type}/{id}/{operation}", interaction: "operation" },
];

pub struct App {
    rt: Runtime,
}

/// Cold start: the function built from its settings, once per instance.
pub async fn boot(settings: &Settings) -> Result<App, BootError> {
    let config = settings.config.clone();
    // Parse the generated model now, not on the first request.
    medrec_edge::fhir::validator::model();
    Ok(App { rt: Runtime::from_config(config).await? })
}

impl App {
    async fn validate(&self, ctx: Ctx<'_>, audit: &mut AuditEntry) -> Result<Response<Body>, Error> {
        let (ty, id, operation) = match ctx.params {
            [ty, op] => (*ty, None, *op),
            [_, id, _] if !is_id(id) => return Err(Error::BadRequest("resource id is not a valid FHIR id".into())),
            [ty, id, op] => (*ty, Some(*id), *op),
            _ => return Err(Error::NotFound),
        };
        if operation != "$validate" {
            return Err(medrec_edge::api::not_served(ctx.req.uri().path()));
        }
        let mut profile = None;
        for (k, v) in http::query(ctx.req)? {
            match k.as_str() {
                "profile" if profile.is_none() => profile = Some(v),
                _ => return Err(Error::BadRequest("$validate takes one profile query parameter only".into())),
            }
        }
        let body = http::json_body(ctx.req, self.rt.config.max_body_bytes)?;
        let outcome = self.rt.services.validate_resource(ctx.caller, ty, id, body, profile, audit).await?;
        Ok(http::response(200, Some(&outcome), &[]))
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
        self.validate(ctx, audit)
    }
}

//! The Cognito pre-token-generation trigger (event version 2): adds the
//! user's `fhirUser` (and a patient's own `patient` context) to their
//! access and ID tokens (`medrec_edge::auth::claims`). It reads only the
//! event: no AWS client, no configuration.

use aws_lambda_events::cognito::{
    ClaimsAndScopeOverrideDetailsV2, CognitoAccessTokenGenerationV2, CognitoEventUserPoolsPreTokenGenV2,
    CognitoIdTokenGenerationV2,
};
use lambda_http::LambdaEvent;
use medrec_edge::auth::claims::person_claims;
use std::collections::HashMap;

pub async fn handle(
    event: LambdaEvent<CognitoEventUserPoolsPreTokenGenV2>,
) -> Result<CognitoEventUserPoolsPreTokenGenV2, lambda_http::Error> {
    let mut e = event.payload;
    let groups = e.request.group_configuration.groups_to_override.clone();
    let claims: HashMap<String, String> =
        person_claims(&e.request.user_attributes, &groups).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    if claims.is_empty() {
        return Ok(e);
    }
    let details =
        e.response.claims_and_scope_override_details.get_or_insert_with(ClaimsAndScopeOverrideDetailsV2::default);
    details
        .id_token_generation
        .get_or_insert_with(CognitoIdTokenGenerationV2::default)
        .claims_to_add_or_override
        .extend(claims.clone());
    details
        .access_token_generation
        .get_or_insert_with(CognitoAccessTokenGenerationV2::default)
        .claims_to_add_or_override
        .extend(claims);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CognitoEventUserPoolsPreTokenGenV2 {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/token-claims-pretoken.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn run(e: CognitoEventUserPoolsPreTokenGenV2) -> CognitoEventUserPoolsPreTokenGenV2 {
        handle(LambdaEvent::new(e, lambda_http::Context::default())).await.unwrap()
    }

    #[tokio::test]
    async fn the_sample_event_gets_fhir_user_in_both_tokens() {
        let out = run(sample()).await;
        let details = out.response.claims_and_scope_override_details.unwrap();
        let claim = |m: &HashMap<String, String>| m.get("fhirUser").cloned();
        let expected = Some("Practitioner/dr-1".to_owned());
        assert_eq!(claim(&details.access_token_generation.unwrap().claims_to_add_or_override), expected);
        assert_eq!(claim(&details.id_token_generation.unwrap().claims_to_add_or_override), expected);
    }

    #[tokio::test]
    async fn a_user_without_a_person_gets_nothing_added() {
        let mut e = sample();
        e.request.user_attributes.remove(medrec_edge::auth::claims::FHIR_USER_ATTRIBUTE);
        assert_eq!(run(e).await.response.claims_and_scope_override_details, None);
    }
}

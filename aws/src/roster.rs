//! The registry roster: the patients medrec has reported to the registry,
//! whose registry history the daily reconciliation reads. Kept beside the
//! consumers' claims (`ProcessedEvents`); ids only.

use super::dynamo::get_s;
use super::port_error;
use super::schema::{patient_of_roster, roster_pk, to_item, RosterItem};
use crate::error::PortError;
use aws_sdk_dynamodb::types::AttributeValue;

pub struct Roster {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Roster {
    pub async fn add(&self, patient: &str) -> Result<(), PortError> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&RosterItem { pk: roster_pk(patient), since: crate::fhir::now_instant() })))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match e.as_service_error() {
                Some(s) if s.is_conditional_check_failed_exception() => Ok(()),
                _ => Err(port_error("dynamodb", &e)),
            })
    }

    /// Every rostered patient. A scan, filtered: the table holds the roster
    /// and short-lived claims only, and this runs once a day.
    pub async fn patients(&self) -> Result<Vec<String>, PortError> {
        let mut out = vec![];
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(roster_pk("")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("dynamodb", &e))?;
            out.extend(page.items().iter().filter_map(|i| patient_of_roster(get_s(i, "pk")?).map(str::to_owned)));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}

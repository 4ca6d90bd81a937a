//! Authorization: roles grant actions per resource type, SMART v2 scopes
//! narrow them, and a patient-context token is confined to its compartment.

use super::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Clinician,
    Registrar,
    Auditor,
    Admin,
    Patient,
    /// The registry sync service: never granted by a token (`parse` does not
    /// know it), only built in-process by `functions/registry-sync`.
    RegistrySync,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "clinician" => Role::Clinician,
            "registrar" => Role::Registrar,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            "patient" => Role::Patient,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Registrar => "registrar",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Patient => "patient",
            Role::RegistrySync => "registry-sync",
        }
    }

    /// The role's own grants, before scopes narrow them.
    fn allows(self, resource_type: &str, action: Action) -> bool {
        use Action::*;
        if crate::fhir::resources::directory_type(resource_type).is_some() {
            // The directory (who treats, where, with what) is staff
            // reference data: clinicians read it, registrars and admins
            // keep it, only admins delete.
            return match self {
                Role::Admin => true,
                Role::Registrar => !matches!(action, Delete),
                Role::Clinician => matches!(action, Read | Search),
                Role::Auditor | Role::Patient | Role::RegistrySync => false,
            };
        }
        match (self, resource_type) {
            (Role::Admin, _) => true,
            (Role::Auditor, "AuditEvent") => matches!(action, Read | Search),
            (Role::Auditor, _) => false,
            (Role::Clinician, "AuditEvent") => false,
            (Role::Clinician, _) => !matches!(action, Delete),
            (Role::Registrar, "Patient" | "Consent") => !matches!(action, Delete),
            (Role::Registrar, _) => false,
            // Their own accounting of disclosures (HIPAA §164.528), not a search.
            (Role::Patient, "AuditEvent") => matches!(action, Read),
            // Patients record and withdraw their own consents (their compartment only).
            (Role::Patient, "Consent") => !matches!(action, Delete),
            (Role::Patient, _) => matches!(action, Read | Search),
            // Minimum necessary: the demographics and immunizations it
            // reports, and the registry's doses it records.
            (Role::RegistrySync, "Patient") => matches!(action, Read),
            (Role::RegistrySync, "Immunization") => matches!(action, Read | Search | Create),
            (Role::RegistrySync, _) => false,
        }
    }
}

/// SMART v2 interactions (`c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Action {
    fn letter(self) -> char {
        match self {
            Action::Create => 'c',
            Action::Read => 'r',
            Action::Update => 'u',
            Action::Delete => 'd',
            Action::Search => 's',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    Patient,
    User,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    pub resource_type: String,
    pub permissions: String,
}

impl Scope {
    /// Parses a SMART v1 or v2 resource scope. Scopes with search constraints
    /// (`?category=...`) are not enforced by medrec yet, so they grant nothing.
    pub fn parse(s: &str) -> Option<Scope> {
        let (ctx, rest) = s.split_once('/')?;
        let context = match ctx {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return None,
        };
        let (ty, perm) = rest.split_once('.')?;
        if ty != "*" && !(ty.bytes().all(|b| b.is_ascii_alphabetic()) && ty.as_bytes().first()?.is_ascii_uppercase()) {
            return None;
        }
        let permissions = match perm {
            "read" => "rs".to_owned(),
            "write" => "cud".to_owned(),
            "*" => "cruds".to_owned(),
            p if is_v2_permissions(p) => p.to_owned(),
            _ => return None,
        };
        Some(Scope { context, resource_type: ty.to_owned(), permissions })
    }

    fn grants(&self, resource_type: &str, action: Action) -> bool {
        (self.resource_type == "*" || self.resource_type == resource_type) && self.permissions.contains(action.letter())
    }
}

/// `cruds` letters, each at most once, in that order.
fn is_v2_permissions(p: &str) -> bool {
    let mut last = None;
    !p.is_empty()
        && p.chars().all(|c| {
            let pos = "cruds".find(c);
            let ok = pos.is_some() && pos > last;
            last = pos;
            ok
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403: the caller may know the resource exists but may not do this.
    Deny(&'static str),
    /// 404: outside the caller's compartment; existence must not leak.
    Hidden,
}

/// Decides one action on one resource type in one patient compartment
/// (`None` for type-level actions such as create or search).
pub fn authorize(p: &Principal, resource_type: &str, action: Action, compartment: Option<&str>) -> Decision {
    let patient_bound = p.roles.contains(&Role::Patient) || p.patient.is_some();
    if patient_bound {
        match (&p.patient, compartment) {
            (None, _) => return Decision::Deny("patient role without patient context"),
            (Some(own), Some(c)) if own != c => return Decision::Hidden,
            _ => {}
        }
    }
    if !p.roles.iter().any(|r| r.allows(resource_type, action)) {
        return Decision::Deny("role does not permit this interaction");
    }
    let scoped = p
        .scopes
        .iter()
        .any(|s| s.grants(resource_type, action) && (s.context != ScopeContext::Patient || p.patient.is_some()));
    if !scoped {
        return Decision::Deny("no granted scope permits this interaction");
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role], scopes: &[&str], patient: Option<&str>) -> Principal {
        Principal {
            subject: "u".into(),
            roles: roles.to_vec(),
            scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            patient: patient.map(str::to_owned),
            fhir_user: None,
            token_id: None,
        }
    }

    #[test]
    fn scope_parsing() {
        assert_eq!(Scope::parse("user/Patient.rs").unwrap().permissions, "rs");
        assert_eq!(Scope::parse("patient/*.read").unwrap().permissions, "rs");
        assert_eq!(Scope::parse("system/*.cruds").unwrap().context, ScopeContext::System);
        for bad in [
            "user/Patient.sr",
            "user/Patient.rr",
            "user/patient.r",
            "user/Patient.rs?x=1",
            "openid",
            "admin/*.*",
            "user/Patient.",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_and_scopes_intersect() {
        let clin = principal(&[Role::Clinician], &["user/Patient.rs"], None);
        assert_eq!(authorize(&clin, "Patient", Action::Read, Some("p1")), Decision::Allow);
        assert!(matches!(authorize(&clin, "Patient", Action::Create, None), Decision::Deny(_)));
        let clin_all = principal(&[Role::Clinician], &["user/*.cruds"], None);
        assert!(matches!(authorize(&clin_all, "Patient", Action::Delete, Some("p1")), Decision::Deny(_)));
        let auditor = principal(&[Role::Auditor], &["user/*.cruds"], None);
        assert!(matches!(authorize(&auditor, "Patient", Action::Read, Some("p1")), Decision::Deny(_)));
        let admin = principal(&[Role::Admin], &["system/*.cruds"], None);
        assert_eq!(authorize(&admin, "Patient", Action::Delete, Some("p1")), Decision::Allow);
        let none = principal(&[Role::Admin], &[], None);
        assert!(matches!(authorize(&none, "Patient", Action::Read, Some("p1")), Decision::Deny(_)));
    }

    #[test]
    fn the_directory_is_staff_reference_data() {
        let all = ["user/*.cruds"];
        let clin = principal(&[Role::Clinician], &all, None);
        assert_eq!(authorize(&clin, "Practitioner", Action::Read, None), Decision::Allow);
        assert!(matches!(authorize(&clin, "Practitioner", Action::Create, None), Decision::Deny(_)));
        let reg = principal(&[Role::Registrar], &all, None);
        assert_eq!(authorize(&reg, "Organization", Action::Update, None), Decision::Allow);
        assert!(matches!(authorize(&reg, "Organization", Action::Delete, None), Decision::Deny(_)));
        let auditor = principal(&[Role::Auditor], &all, None);
        assert!(matches!(authorize(&auditor, "Location", Action::Read, None), Decision::Deny(_)));
        let me = principal(&[Role::Patient], &["patient/*.rs"], Some("p1"));
        assert!(matches!(authorize(&me, "Practitioner", Action::Read, None), Decision::Deny(_)));
    }

    #[test]
    fn patient_tokens_stay_in_their_compartment() {
        let me = principal(&[Role::Patient], &["patient/Patient.rs"], Some("p1"));
        assert_eq!(authorize(&me, "Patient", Action::Read, Some("p1")), Decision::Allow);
        assert_eq!(authorize(&me, "Patient", Action::Read, Some("p2")), Decision::Hidden);
        assert!(matches!(authorize(&me, "Patient", Action::Update, Some("p1")), Decision::Deny(_)));
        let no_ctx = principal(&[Role::Patient], &["patient/Patient.rs"], None);
        assert!(matches!(authorize(&no_ctx, "Patient", Action::Read, Some("p1")), Decision::Deny(_)));
        let patient_scope_no_ctx = principal(&[Role::Clinician], &["patient/Patient.rs"], None);
        assert!(matches!(authorize(&patient_scope_no_ctx, "Patient", Action::Read, Some("p1")), Decision::Deny(_)));
    }
}

//! The OpenAPI 3.1 document of the admin and customer APIs, generated from the
//! handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives,
//! and served at `/openapi.json` on the admin listener. A snapshot of it is kept
//! in `docs/openapi.json`; a test fails when the two differ.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use super::problem::{PROBLEM_CONTENT_TYPE, Problem};
use super::{admin_api, admin_artifacts, admin_events, admin_webhooks, customer_api, updates};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        description = "Entitlement-aware content-download gateway. The admin API (admin listener, admin \
                       token) manages the catalog; the customer API (public listener, customer API key) lists \
                       what a customer may download and hands out signed, time-limited URLs. Every refusal is \
                       an RFC 9457 problem body with a stable `code`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        admin_api::list_products, admin_api::get_product, admin_api::put_product, admin_api::delete_product,
        admin_api::list_releases, admin_api::get_release, admin_api::put_release, admin_api::delete_release,
        admin_api::publish_release, admin_api::yank_release, admin_api::restore_release,
        admin_api::cut_release_downloads, admin_api::cut_customer_downloads,
        admin_api::eligible_customers,
        admin_artifacts::list_artifacts, admin_artifacts::get_artifact, admin_artifacts::put_artifact,
        admin_artifacts::delete_artifact, admin_artifacts::plan_upload, admin_artifacts::complete_upload,
        admin_artifacts::put_signature, admin_artifacts::delete_signature,
        admin_api::list_customers, admin_api::get_customer, admin_api::put_customer,
        admin_api::list_entitlements, admin_api::get_entitlement, admin_api::put_entitlement,
        admin_api::delete_entitlement,
        admin_api::list_api_keys, admin_api::create_api_key, admin_api::revoke_api_key,
        admin_api::create_feed_token, admin_api::revoke_feed_token,
        admin_api::put_portal_user, admin_api::get_portal_user, admin_api::list_portal_users, admin_api::delete_portal_user, admin_api::sign_out_portal_user, admin_api::get_branding, admin_api::put_branding, admin_api::reset_branding, admin_api::list_sso_providers,
        admin_events::list_events, admin_events::downloads_report, admin_events::adoption,
        admin_webhooks::put_webhook, admin_webhooks::list_webhooks, admin_webhooks::get_webhook,
        admin_webhooks::delete_webhook, admin_webhooks::list_dead_letters, admin_webhooks::redeliver_dead_letter,
        customer_api::list_entitlements, customer_api::list_releases, customer_api::create_download,
        customer_api::upgrade, customer_api::usage,
        updates::tauri, updates::tauri_path, updates::sparkle, updates::electron_channel_file,
        updates::electron_file, updates::atom,
    ),
    components(schemas(Problem)),
    modifiers(&Conventions),
    tags(
        (name = "admin", description = "Admin API, under /admin/v1 on the admin listener"),
        (name = "customer", description = "Customer API, under /v1 on the public listener"),
    ),
)]
pub struct ApiDoc;

/// What holds for every operation, added here rather than repeated on each:
/// the bearer schemes, the admin token on every admin route, and the problem
/// body of every refusal.
#[derive(Debug)]
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build())
        };
        components.add_security_scheme("admin_token", bearer("An admin token from admin.tokens (tga_…)"));
        components.add_security_scheme("api_key", bearer("A customer API key (tg_<customer>_…)"));
        components.add_security_scheme(
            "feed_token",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "token",
                    "A customer's read-only feed token (tgf_…), for feed readers",
                ),
            )),
        );
        let problem = ResponseBuilder::new()
            .description("A refusal: an RFC 9457 problem body whose `code` says why")
            .content(PROBLEM_CONTENT_TYPE, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let admin = path.starts_with("/admin/");
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                // Refusals named on an operation are problem bodies too.
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = response
                        && let Some(content) = r.content.shift_remove("application/json")
                    {
                        let is_problem = matches!(&content, RefOr::T(c)
                            if matches!(&c.schema, Some(RefOr::Ref(to)) if to.ref_location.ends_with("/Problem")));
                        let media = if is_problem { PROBLEM_CONTENT_TYPE } else { "application/json" };
                        r.content.insert(media.to_owned(), content);
                    }
                }
                op.responses.responses.entry("default".into()).or_insert_with(|| RefOr::T(problem.clone()));
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param {
                        constrain_path_parameter(param);
                    }
                }
                if admin {
                    op.security = Some(vec![SecurityRequirement::new("admin_token", Vec::<String>::new())]);
                }
            }
        }
    }
}

/// An id: what `catalog::check_id` accepts.
const ID_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$";
/// A semantic version (semver 2.0.0, numbers of at most 16 digits).
const SEMVER_PATTERN: &str = r"^(0|[1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,15})\.(0|[1-9][0-9]{0,15})(-(0|[1-9][0-9]{0,15}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,15}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$";
/// A file name: what `catalog::artifacts::check_filename` accepts.
const FILENAME_PATTERN: &str = r"^[^./\\\u0000-\u001f\u007f-\u009f][^/\\\u0000-\u001f\u007f-\u009f]{0,254}$";

/// The words of an update client's request (Tauri's `target`, `arch`,
/// `bundle_type`).
const WORD_PATTERN: &str = r"^[A-Za-z0-9_]{1,32}$";

/// Path parameters are named the same on every route; each name has one
/// rule, stated here once: ids, versions (at most
/// `catalog::repo::MAX_VERSION` characters) and file names; and the update
/// clients' parameters, in the path or the query.
fn constrain_path_parameter(param: &mut Parameter) {
    let in_path = param.parameter_in == ParameterIn::Path;
    let (pattern, max_length) = match param.name.as_str() {
        "product" | "customer" | "entitlement" | "id" if in_path => (ID_PATTERN, None),
        "version" if in_path => (SEMVER_PATTERN, Some(crate::catalog::repo::MAX_VERSION)),
        "filename" if in_path => (FILENAME_PATTERN, None),
        "current_version" => (SEMVER_PATTERN, Some(crate::catalog::repo::MAX_VERSION)),
        "target" | "arch" | "bundle_type" => (WORD_PATTERN, None),
        "email" if in_path => (crate::portal::EMAIL_PATTERN, Some(crate::portal::MAX_EMAIL)),
        _ => return,
    };
    if let Some(RefOr::T(Schema::Object(schema))) = &mut param.schema {
        schema.pattern = Some(pattern.to_owned());
        schema.max_length = max_length;
    }
}

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}

/// `GET /openapi.json` on the admin listener.
pub async fn openapi_json() -> Response {
    let mut r = document().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

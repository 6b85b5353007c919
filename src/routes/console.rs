//! `/console/*`: the marketer's console, server-rendered pages over the same store queries as
//! the admin API. Thin handlers: who is signed in ([`ConsoleUser`]), check the CSRF token and
//! the role, call the store, render a page. Every page is `no-store` and under the strict CSP.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use minijinja::context;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::console::{self, NewPassword, Role};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{Cursor, LeadQuery, LeadStatus, LinkUse, SessionRecord};
use crate::tokens;

const SESSION_COOKIE: &str = "inlet_session";
const LOGIN_COOKIE: &str = "inlet_login";
/// A session's last-seen time is written at most this often (a page view is a read).
const TOUCH_EVERY_MS: i64 = 60_000;
const PAGE_SIZE: u32 = 50;

/// Largest console form body (a password, a token and a few fields).
const FORM_LIMIT: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(FORM_LIMIT)
            .error_handler(|e, _| ApiError::BadRequest("invalid_form", e.to_string()).into()),
    )
    .service(
        web::scope("/console")
            .wrap(actix_web::middleware::from_fn(error_pages))
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/console.css", web::get().to(stylesheet))
            .service(web::resource("/login/link").route(web::post().to(email_link)))
            .service(
                web::resource("/login")
                    .route(web::get().to(login_page))
                    .route(web::post().to(login)),
            )
            .route("/logout", web::post().to(logout))
            .service(
                web::resource("/setup/{token}")
                    .route(web::get().to(setup_page))
                    .route(web::post().to(setup)),
            )
            .service(
                web::resource("/link/{token}")
                    .route(web::get().to(link_page))
                    .route(web::post().to(follow_link)),
            )
            .service(
                web::resource("/password")
                    .route(web::get().to(password_page))
                    .route(web::post().to(set_password)),
            )
            .route("/overview", web::get().to(overview))
            .route("/leads", web::get().to(leads))
            .route("/leads/export.{format}", web::get().to(export))
            .route("/leads/{id}", web::get().to(lead))
            .route("/leads/{id}/export", web::get().to(export_lead))
            .route(
                "/leads/{id}/stage",
                web::post().to(super::console_qualification::set_stage),
            )
            .route(
                "/handoffs",
                web::get().to(super::console_qualification::queue),
            )
            .route(
                "/handoffs/{id}",
                web::post().to(super::console_qualification::answer),
            )
            .service(
                web::resource("/leads/{id}/{action}")
                    .guard(actix_web::guard::Post())
                    .route(web::post().to(change)),
            )
            .route("/leads/{id}/erase", web::get().to(erase_page))
            .route("/forms", web::get().to(forms))
            .route(
                "/sequences",
                web::get().to(super::console_qualification::sequences),
            )
            .service(
                web::resource("/people")
                    .route(web::get().to(people))
                    .route(web::post().to(add_person)),
            )
            .route("/people/remove", web::post().to(remove_person))
            .service(
                web::resource("/keys")
                    .route(web::get().to(keys))
                    .route(web::post().to(create_key)),
            )
            .route("/keys/revoke", web::post().to(revoke_key))
            .service(
                web::resource("/import")
                    .app_data(
                        actix_multipart::form::MultipartFormConfig::default()
                            .total_limit(super::admin::MAX_IMPORT_BYTES + 64 * 1024)
                            .memory_limit(super::admin::MAX_IMPORT_BYTES + 64 * 1024)
                            .error_handler(|e, _| {
                                ApiError::BadRequest(
                                    "invalid_upload",
                                    format!("the upload could not be read: {e}"),
                                )
                                .into()
                            }),
                    )
                    .route(web::get().to(import_page))
                    .route(web::post().to(import_upload)),
            )
            .route("/deliveries", web::get().to(deliveries))
            .route("/deliveries/{target}/retry", web::post().to(retry)),
    );
}

/// Every console failure (a handler's or an extractor's [`ApiError`]) becomes a page: the
/// sign-in page for a missing session, else an error page that says what happened, with the
/// error's status and headers. The one place console errors meet HTML.
async fn error_pages(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let page = {
        let err = res
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>());
        let state = res.request().app_data::<web::Data<AppState>>();
        match (err, state) {
            (Some(err), Some(state)) => {
                let user = res.request().extensions().get::<UserView>().cloned();
                Some(failure(state, user.as_ref(), err))
            }
            _ => None,
        }
    };
    Ok(match page {
        Some(page) => res.into_response(page),
        None => res.map_into_boxed_body(),
    })
}

// ---------------------------------------------------------------------------------------
// Responses

/// A console page with the headers every one carries.
pub(super) fn page(
    state: &AppState,
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
) -> HttpResponse {
    let (status, body) = match state.console.render(name, ctx) {
        Ok(html) => (status, html),
        Err(apology) => (StatusCode::INTERNAL_SERVER_ERROR, apology),
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, super::pages::CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// An error as a console page (a missing session: the sign-in page instead).
fn failure(state: &AppState, user: Option<&UserView>, err: &ApiError) -> HttpResponse {
    if matches!(err, ApiError::SignInRequired) {
        return see_other("/console/login");
    }
    let status = err.status_code();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Please try again in a moment",
        s if s.is_client_error() => "That did not work",
        _ => "Something went wrong",
    };
    let message = match err {
        ApiError::NotFound => "There is nothing here: the lead may have been erased.".to_string(),
        other => sentence(&other.to_string()),
    };
    let mut resp = page(
        state,
        status,
        "error.html",
        context! { title, message, user },
    );
    let mut builder = HttpResponse::build(status);
    err.decorate(&mut builder);
    for (name, value) in builder.finish().headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// `text` with a capital and a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        let rest = chars.as_str().trim_end_matches('.');
        format!("{}{rest}.", c.to_uppercase())
    })
}

fn session_cookie<'c>(state: &AppState, value: String) -> Cookie<'c> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/console")
        .http_only(true)
        .secure(state.public_url.starts_with("https://"))
        .same_site(SameSite::Strict)
        .finish()
}

// ---------------------------------------------------------------------------------------
// Who is signed in

/// The person behind a request's session: the first argument of every page behind sign-in.
/// A missing, unknown, idle (past `console.idle_minutes`) or old (past
/// `console.absolute_hours`) session sends the browser to the sign-in page.
pub struct ConsoleUser {
    session: SessionRecord,
    pub role: Role,
}

/// What a page shows of the person signed in (kept in the request, so error pages show it).
#[derive(Debug, Clone, Serialize)]
pub(super) struct UserView {
    email: String,
    role: &'static str,
    csrf: String,
    has_password: bool,
}

impl ConsoleUser {
    /// The address the person signs in with.
    pub(super) fn email(&self) -> &str {
        &self.session.email
    }

    pub(super) fn view(&self) -> UserView {
        UserView {
            email: self.session.email.clone(),
            role: self.role.as_str(),
            csrf: self.session.csrf.clone(),
            has_password: self.session.has_password != 0,
        }
    }

    /// A state-changing form must carry the session's CSRF token.
    pub(super) fn check_csrf(&self, given: &str) -> Result<(), ApiError> {
        if bool::from(given.as_bytes().ct_eq(self.session.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "csrf_failed",
                "this form is out of date or did not come from the console; reload the page and try again".into(),
            ))
        }
    }

    fn may_manage_people(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "role_not_allowed",
                format!(
                    "only an admin manages who may sign in (your role: {})",
                    self.role
                ),
            ))
        }
    }

    pub(super) fn may_handle_data(&self) -> Result<(), ApiError> {
        if self.role.may_handle_data() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "role_not_allowed",
                format!(
                    "your role ({}) may look but not export or change leads; ask an admin",
                    self.role
                ),
            ))
        }
    }
}

/// The session in force for `req`, if any (ended sessions are deleted as they are found).
async fn current(req: &HttpRequest, state: &AppState) -> Result<ConsoleUser, ApiError> {
    let token = req
        .cookie(SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|t| tokens::token_shaped(t))
        .ok_or(ApiError::SignInRequired)?;
    let hash = tokens::token_hash(&token);
    let session = state
        .store
        .session(&hash)
        .await?
        .ok_or(ApiError::SignInRequired)?;
    let now = state.clock.now_ms();
    let (idle_ms, max_ms) = session_limits(state);
    if now - session.last_seen_at_ms > idle_ms || now - session.created_at_ms > max_ms {
        state.store.end_session(&hash).await?;
        return Err(ApiError::SignInRequired);
    }
    if now - session.last_seen_at_ms > TOUCH_EVERY_MS {
        state.store.touch_session(&hash, now).await?;
    }
    let role = session
        .role
        .parse::<Role>()
        .map_err(|m| ApiError::Internal(anyhow::anyhow!(m)))?;
    if role == Role::Sales && !sales_may_visit(req.path()) {
        return Err(ApiError::Forbidden(
            "role_not_allowed",
            "a sales account sees its hand-off queue and those leads only".into(),
        ));
    }
    Ok(ConsoleUser { session, role })
}

/// Where a `sales` account may go: its queue, its leads' pages (each checked to be one of
/// its hand-offs), its password and sign-out; the overview and the lead list send it to the
/// queue. Everything else is refused whatever is added later: deny by default.
fn sales_may_visit(path: &str) -> bool {
    let rest = path.strip_prefix("/console/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["handoffs"] | ["handoffs", _] | ["password"] | ["logout"] | ["overview"] | ["leads"] => {
            true
        }
        ["leads", id] => !id.starts_with("export."),
        _ => false,
    }
}

impl FromRequest for ConsoleUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ConsoleUser, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or(ApiError::SignInRequired)?;
            let user = current(&req, &state).await?;
            req.extensions_mut().insert(user.view());
            Ok(user)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Signing in and out

async fn home() -> HttpResponse {
    see_other("/console/overview")
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(console::STYLESHEET)
}

/// Where to go after signing in: only a console path (never another site).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| {
        n.starts_with("/console/")
            && !n.starts_with("//")
            && !n.contains(['\\', '\r', '\n'])
            && !n.starts_with("/console/logout")
    })
    .map_or_else(|| "/console/leads".to_string(), str::to_string)
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

/// The sign-in page. A fresh token goes into a cookie and the form (double submit), so a
/// sign-in cannot be posted from another site to sign a victim into the attacker's account.
async fn login_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let next: NextQuery = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    login_form(
        &state,
        StatusCode::OK,
        "",
        None,
        &safe_next(next.next.as_deref()),
    )
}

fn login_form(
    state: &AppState,
    status: StatusCode,
    email: &str,
    error: Option<String>,
    next: &str,
) -> HttpResponse {
    login_page_with(state, status, context! { email, error, next })
}

/// The sign-in page with `says` (the address typed, an error or a notice, `next`), and a
/// fresh double-submit token in a cookie and in the forms.
fn login_page_with(state: &AppState, status: StatusCode, says: minijinja::Value) -> HttpResponse {
    let token = tokens::new_token();
    let mut resp = page(
        state,
        status,
        "login.html",
        context! { login_token => token.as_str(), link_for => console::minutes_in_words(state.settings.console.link_minutes), ..says },
    );
    let cookie = Cookie::build(LOGIN_COOKIE, token)
        .path("/console/login")
        .http_only(true)
        .secure(state.public_url.starts_with("https://"))
        .same_site(SameSite::Strict)
        .finish();
    let _ = resp.add_cookie(&cookie);
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(rename = "_login", default)]
    login: String,
    next: Option<String>,
}

/// Whether the form's double-submit token matches its cookie (another site cannot sign a
/// browser in, or ask for mail in its name).
fn login_token_ok(req: &HttpRequest, token: &str) -> bool {
    req.cookie(LOGIN_COOKIE).is_some_and(|c| {
        !token.is_empty() && bool::from(c.value().as_bytes().ct_eq(token.as_bytes()))
    })
}

/// What every sign-in attempt (a password, or asking for a link) passes first: the form's
/// double-submit token, then the throttle per account and per client IP (counted right or
/// wrong). Refused: the sign-in page saying why (403, or 429 with `Retry-After`).
async fn sign_in_refused(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    email: &str,
    next: &str,
) -> Option<HttpResponse> {
    if !login_token_ok(req, token) {
        return Some(login_form(
            state,
            StatusCode::FORBIDDEN,
            email,
            Some("The sign-in form expired. Please try again.".into()),
            next,
        ));
    }
    state
        .sign_in
        .attempt(email, super::client_addr(req, state))
        .await
        .err()
        .map(|wait| {
            let mut resp = login_form(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                email,
                Some(format!(
                    "Too many sign-in attempts. Try again in {} minutes.",
                    wait.as_secs().div_ceil(60).max(1)
                )),
                next,
            );
            if let Ok(v) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        })
}

#[derive(Deserialize)]
struct LinkRequest {
    #[serde(default)]
    email: String,
    #[serde(rename = "_login", default)]
    login: String,
    next: Option<String>,
}

/// `POST /console/login/link`: emails a one-time sign-in link to the account with this
/// address (queued, sent by the worker). The answer is the same whether there is an account
/// or not, in its content and its timing (the link is queued once the answer is on its way),
/// and requests count against the same throttle as passwords.
async fn email_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_lowercase();
    if let Some(page) = sign_in_refused(&req, &state, &form.login, &email, &next).await {
        return Ok(page);
    }
    if let Some(user) = state.store.user_by_email(&email).await? {
        // Queued after the answer, so an address with an account is not answered later than
        // one without (the write would tell them apart); someone whose link never comes asks
        // again.
        let state = state.clone();
        actix_web::rt::spawn(async move {
            match state
                .store
                .queue_sign_in_mail(&user.id, state.clock.now_ms())
                .await
            {
                Ok(()) => {
                    state.outbox_wake.notify_one();
                    tracing::info!(user_id = %user.id, "console: sign-in link asked for by email");
                }
                Err(e) => {
                    tracing::error!(user_id = %user.id, error = %e, "console: sign-in link not queued");
                }
            }
        });
    }
    let notice = format!(
        "If {email} has an account, a sign-in link is on its way. It works once, for {}.",
        console::minutes_in_words(state.settings.console.link_minutes)
    );
    Ok(login_page_with(
        &state,
        StatusCode::OK,
        context! { email, next, notice },
    ))
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_lowercase();
    if let Some(page) = sign_in_refused(&req, &state, &form.login, &email, &next).await {
        return Ok(page);
    }
    let user = state.store.user_by_email(&email).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let typed = form.password.clone();
    // Argon2id takes tens of milliseconds of CPU: off the async workers.
    let ok = web::block(move || console::verify_password(hash.as_deref(), &typed))
        .await
        .unwrap_or(false);
    match user {
        Some(user) if ok => {
            tracing::info!(user_id = %user.id, "console sign-in");
            start_session(&state, &user.id, &next).await
        }
        _ => Ok(login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            &email,
            Some("That email and password do not match an account.".into()),
            &next,
        )),
    }
}

/// `(idle, absolute)` session limits in milliseconds.
fn session_limits(state: &AppState) -> (i64, i64) {
    let c = &state.settings.console;
    let ms = |v: u64, unit: u64| i64::try_from(v.saturating_mul(unit)).unwrap_or(i64::MAX);
    (ms(c.idle_minutes, 60_000), ms(c.absolute_hours, 3_600_000))
}

/// Signs `user_id` in: a new session, its cookie, and on to `next`.
async fn start_session(
    state: &AppState,
    user_id: &str,
    next: &str,
) -> Result<HttpResponse, ApiError> {
    let token = tokens::new_token();
    let now = state.clock.now_ms();
    let (idle, max) = session_limits(state);
    state
        .store
        .create_session(
            &tokens::token_hash(&token),
            user_id,
            &tokens::new_token(),
            now,
            (now.saturating_sub(idle), now.saturating_sub(max)),
        )
        .await?;
    let mut resp = see_other(next);
    let _ = resp.add_cookie(&session_cookie(state, token));
    let _ = resp.add_removal_cookie(
        &Cookie::build(LOGIN_COOKIE, "")
            .path("/console/login")
            .finish(),
    );
    Ok(resp)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

async fn logout(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    state.store.end_session(&user.session.id_hash).await?;
    let mut resp = see_other("/console/login");
    let _ = resp.add_removal_cookie(&session_cookie(&state, String::new()));
    Ok(resp)
}

/// A one-time link in the path: shaped like one, and still usable.
async fn valid_link(state: &AppState, token: &str) -> Result<Option<Option<String>>, ApiError> {
    if !tokens::token_shaped(token) {
        return Ok(None);
    }
    Ok(state
        .store
        .sign_in_link_valid(&tokens::token_hash(token), state.clock.now_ms())
        .await?)
}

fn link_gone(state: &AppState) -> HttpResponse {
    page(
        state,
        StatusCode::GONE,
        "error.html",
        context! {
            title => "This link no longer works",
            message => "Sign-in links work once and for a limited time. Ask an admin for a new one \
                        (inlet users link EMAIL), or sign in with your password.",
            link => "/console/login",
            link_text => "Go to the sign-in page",
        },
    )
}

async fn setup_page(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(match valid_link(&state, &token).await? {
        Some(None) => page(
            &state,
            StatusCode::OK,
            "setup.html",
            context! { token => token.as_str(), email => "" },
        ),
        _ => link_gone(&state),
    })
}

#[derive(Deserialize)]
struct SetupForm {
    email: String,
    password: String,
    repeat: String,
}

async fn setup(
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, ApiError> {
    if !tokens::token_shaped(&token) {
        return Ok(link_gone(&state));
    }
    let again = |error: String| {
        Ok(page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            "setup.html",
            context! { token => token.as_str(), email => form.email.as_str(), error },
        ))
    };
    let email = match crate::domain::EmailAddress::parse(form.email.trim()) {
        Ok(e) => e,
        Err(e) => return again(format!("That email address is not valid: {e}.")),
    };
    let password = match NewPassword::parse(&form.password, &form.repeat) {
        Ok(p) => p,
        Err(m) => return again(m.to_string()),
    };
    let hash = web::block(move || password.hash())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let used = state
        .store
        .use_sign_in_link(
            &tokens::token_hash(&token),
            Some((email.as_str(), hash.as_str())),
            state.clock.now_ms(),
        )
        .await?;
    match used {
        LinkUse::Setup(id) => {
            tracing::info!(user_id = %id, "console set up: first admin created");
            start_session(&state, &id, "/console/leads").await
        }
        _ => Ok(link_gone(&state)),
    }
}

/// A sign-in link asks for a click (a POST) before it signs anyone in: mail scanners that
/// fetch every link must not use it up.
async fn link_page(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(match valid_link(&state, &token).await? {
        Some(Some(_)) => page(
            &state,
            StatusCode::OK,
            "link.html",
            context! { token => token.as_str() },
        ),
        Some(None) => see_other(&format!("/console/setup/{token}")),
        None => link_gone(&state),
    })
}

async fn follow_link(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !tokens::token_shaped(&token) {
        return Ok(link_gone(&state));
    }
    let used = state
        .store
        .use_sign_in_link(&tokens::token_hash(&token), None, state.clock.now_ms())
        .await?;
    match used {
        LinkUse::User(id) => {
            tracing::info!(user_id = %id, "console sign-in with a one-time link");
            start_session(&state, &id, "/console/password").await
        }
        _ => Ok(link_gone(&state)),
    }
}

async fn password_page(user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    page(
        &state,
        StatusCode::OK,
        "password.html",
        context! { user => user.view() },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    password: String,
    repeat: String,
}

async fn set_password(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    let password = match NewPassword::parse(&form.password, &form.repeat) {
        Ok(p) => p,
        Err(m) => {
            return Ok(page(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                "password.html",
                context! { user => user.view(), error => m },
            ))
        }
    };
    let hash = web::block(move || password.hash())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    state
        .store
        .set_password_hash(&user.session.user_id, &hash, Some(&user.session.id_hash))
        .await?;
    tracing::info!(user_id = %user.session.user_id, "console password set");
    Ok(see_other("/console/leads?saved=password"))
}

// ---------------------------------------------------------------------------------------
// Overview

/// `1234567` as `1,234,567`.
fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{:.1} %", r * 100.0))
}

#[derive(Deserialize)]
struct OverviewQuery {
    days: Option<i64>,
}

#[derive(Serialize)]
struct Card {
    label: &'static str,
    value: String,
    sub: String,
    tone: Option<&'static str>,
}

#[derive(Serialize)]
struct GroupRow {
    group: String,
    views: String,
    unique: String,
    submissions: String,
    conversion: String,
    spam_share: String,
}

fn group_rows(groups: &[crate::reports::Group]) -> Vec<GroupRow> {
    groups
        .iter()
        .map(|g| GroupRow {
            group: if g.group.is_empty() {
                "(none)".into()
            } else {
                g.group.clone()
            },
            views: count(g.figures.views),
            unique: count(g.figures.unique_views + g.figures.private_views),
            submissions: count(g.figures.submissions),
            conversion: percent(g.figures.conversion),
            spam_share: percent(g.figures.spam_share),
        })
        .collect()
}

/// `GET /console/overview?days=7|30|90`: the period at a glance, charts drawn on the server.
async fn overview(
    user: ConsoleUser,
    state: web::Data<AppState>,
    query: web::Query<OverviewQuery>,
) -> Result<HttpResponse, ApiError> {
    if user.role == Role::Sales {
        return Ok(see_other("/console/handoffs"));
    }
    use crate::console::charts::{over_time, ranking, Point};
    use crate::reports::Granularity;
    use crate::store::GroupBy;
    let days = match query.days.unwrap_or(30) {
        d @ (7 | 30 | 90) => d,
        _ => {
            return Err(ApiError::BadRequest(
                "invalid_query",
                "the overview covers 7, 30 or 90 days".into(),
            ))
        }
    };
    let now = state.clock.now_ms();
    let today = now.div_euclid(crate::store::DAY_MS);
    let range = (today - days + 1, today);
    // Missing settled days are counted once, before the two reports read them side by side.
    state
        .store
        .roll_up_missing(range.0, range.1 + 1, now)
        .await?;
    let (by_form, by_source) = tokio::try_join!(
        crate::reports::report(
            &state.store,
            range,
            Granularity::Day,
            GroupBy::Form,
            None,
            now
        ),
        crate::reports::report(
            &state.store,
            range,
            Granularity::Day,
            GroupBy::Source,
            None,
            now
        ),
    )?;
    let t = &by_form.totals;
    let f = &by_form.outbox;
    let cards = vec![
        Card {
            label: "Form views",
            value: count(t.views),
            sub: format!("{} daily-unique", count(t.unique_views + t.private_views)),
            tone: None,
        },
        Card {
            label: "Leads",
            value: count(t.submissions),
            sub: "valid submissions".into(),
            tone: None,
        },
        Card {
            label: "Conversion",
            value: percent(t.conversion),
            sub: "leads ÷ daily-unique views".into(),
            tone: None,
        },
        Card {
            label: "Spam share",
            value: percent(t.spam_share),
            sub: format!("{} quarantined", count(t.spam)),
            tone: None,
        },
        Card {
            label: "Double opt-in confirmed",
            value: percent(t.confirmation_rate),
            sub: format!(
                "{} confirmed, {} waiting",
                count(t.confirmed),
                count(t.confirmation_pending)
            ),
            tone: None,
        },
        Card {
            label: "Downloads used",
            value: count(t.downloads_used),
            sub: "download links opened".into(),
            tone: None,
        },
        Card {
            label: "Follow-ups sent",
            value: count(t.follow_ups_sent),
            sub: "to this period's leads".into(),
            tone: None,
        },
        Card {
            label: "Email now",
            value: format!("{} waiting", count(f.waiting)),
            sub: format!("{} retrying, {} gave up", count(f.retrying), count(f.dead)),
            tone: (f.dead > 0)
                .then_some("bad")
                .or((f.retrying > 0).then_some("warn")),
        },
        Card {
            label: "Oldest waiting message",
            value: f.oldest_waiting_at.as_deref().map_or_else(
                || "none".into(),
                |at| {
                    chrono::DateTime::parse_from_rfc3339(at)
                        .map(|t| console::when(t.timestamp_millis()))
                        .unwrap_or_default()
                },
            ),
            sub: "queued, not sent yet".into(),
            tone: None,
        },
    ];
    let leads_points: Vec<Point> = by_form
        .periods
        .iter()
        .map(|p| Point {
            label: p.period.clone(),
            #[allow(clippy::cast_precision_loss)]
            value: p.figures.submissions as f64,
            text: count(p.figures.submissions),
        })
        .collect();
    let conversion_points: Vec<Point> = by_form
        .periods
        .iter()
        .map(|p| Point {
            label: p.period.clone(),
            value: p.figures.conversion.unwrap_or(0.0) * 100.0,
            text: percent(p.figures.conversion),
        })
        .collect();
    let top = |groups: &[crate::reports::Group]| -> Vec<Point> {
        groups
            .iter()
            .take(8)
            .map(|g| Point {
                label: if g.group.is_empty() {
                    "(none)".into()
                } else {
                    g.group.clone()
                },
                #[allow(clippy::cast_precision_loss)]
                value: g.figures.submissions as f64,
                text: format!(
                    "{} ({})",
                    count(g.figures.submissions),
                    percent(g.figures.conversion)
                ),
            })
            .collect()
    };
    let periods: Vec<_> = by_form
        .periods
        .iter()
        .map(|p| {
            context! {
                period => p.period, views => count(p.figures.views),
                unique => count(p.figures.unique_views + p.figures.private_views),
                submissions => count(p.figures.submissions), conversion => percent(p.figures.conversion),
            }
        })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "overview.html",
        context! {
            user => user.view(), section => "overview", days,
            from => by_form.from, to => by_form.to, conversion_is => by_form.conversion_is,
            cards,
            leads_chart => over_time("leads", "Leads per day", &leads_points, false),
            conversion_chart => over_time("conversion", "Conversion per day (%)", &conversion_points, true),
            sources_chart => ranking("sources", "Top sources by leads (conversion)", &top(&by_source.groups)),
            forms_chart => ranking("forms", "Forms by leads (conversion)", &top(&by_form.groups)),
            forms => group_rows(&by_form.groups), sources => group_rows(&by_source.groups),
            periods,
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Leads

/// The lead list's filters, as the filter form sends them (every field optional, empty
/// meaning "any").
#[derive(Debug, Default, Deserialize, Serialize)]
struct LeadFilter {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    form: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    campaign: String,
    /// A lead status (see [`LeadStatus`]); quarantined leads are `show=quarantined`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    show: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    order: String,
    #[serde(default, skip_serializing)]
    cursor: String,
    #[serde(default, skip_serializing)]
    saved: String,
    #[serde(default, skip_serializing)]
    erased: String,
}

fn day_start(name: &str, v: &str) -> Result<Option<i64>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc().timestamp_millis()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid_query",
                format!("the {name} date must look like 2026-12-31"),
            )
        })
}

impl LeadFilter {
    fn parse(req: &HttpRequest) -> Result<LeadFilter, ApiError> {
        serde_urlencoded::from_str(req.query_string()).map_err(|_| {
            ApiError::BadRequest("invalid_query", "the filters could not be read".into())
        })
    }

    fn is_filtered(&self) -> bool {
        !(self.q.is_empty()
            && self.form.is_empty()
            && self.source.is_empty()
            && self.campaign.is_empty()
            && self.status.is_empty()
            && self.from.is_empty()
            && self.to.is_empty())
            || self.show == "quarantined"
    }

    /// The store query these filters mean (a bad value is a clear 400, never a 500).
    fn query(&self, state: &AppState, limit: u32) -> Result<LeadQuery, ApiError> {
        let form_id = super::known_form(state, Some(&self.form))?.map(str::to_string);
        let after = match self.cursor.as_str() {
            "" => None,
            c => Some(Cursor::parse(c).ok_or_else(|| {
                ApiError::BadRequest("invalid_cursor", "the page link is not valid".into())
            })?),
        };
        Ok(LeadQuery {
            form_id,
            since_ms: day_start("from", &self.from)?,
            until_ms: day_start("until", &self.to)?.map(|t| t + 86_400_000),
            quarantined: self.show == "quarantined",
            email_prefix: super::admin::email_prefix(Some(&self.q))?,
            name_prefix: super::admin::name_prefix(Some(&self.q))?,
            source: crate::domain::dimension(Some(&self.source)),
            campaign: crate::domain::dimension(Some(&self.campaign)),
            newest_first: self.order != "oldest",
            after,
            limit,
        })
    }

    /// The status asked for, if any (a bad one is a clear 400).
    fn status(&self) -> Result<Option<LeadStatus>, ApiError> {
        match self.status.as_str() {
            "" => Ok(None),
            s => <LeadStatus as clap::ValueEnum>::from_str(s, true)
                .ok()
                .filter(|s| *s != LeadStatus::Quarantined)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "invalid_query",
                        "status must be active, confirmed, pending, unsubscribed, bounced or erased"
                            .into(),
                    )
                }),
        }
    }

    /// The filters as a query string (no page position), for links that keep them.
    fn query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct LeadRow {
    id: String,
    email: String,
    name: String,
    company: String,
    form: String,
    source: String,
    status: &'static str,
    last: String,
    count: i64,
}

fn source_of(a: &crate::domain::Attribution) -> String {
    if let Some(s) = a.utm_source.as_deref().filter(|s| !s.is_empty()) {
        return match a.utm_medium.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => format!("{s} / {m}"),
            None => s.to_string(),
        };
    }
    a.referrer
        .as_deref()
        .and_then(|r| url::Url::parse(r).ok())
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "direct".into())
}

async fn leads(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if user.role == Role::Sales {
        return Ok(see_other("/console/handoffs"));
    }
    let filter = LeadFilter::parse(&req)?;
    let forms: Vec<&str> = state.forms.all().iter().map(|f| f.id.as_str()).collect();
    let flash = if filter.saved == "password" {
        Some("Your password is saved.")
    } else if filter.erased == "1" {
        Some("The lead was erased. Their address stays on the suppression list.")
    } else {
        None
    };
    let query = match filter.query(&state, PAGE_SIZE) {
        Ok(q) => q,
        Err(e) => {
            return Ok(page(
                &state,
                e.status_code(),
                "leads.html",
                context! {
                    user => user.view(), section => "leads", filter, forms,
                    error => sentence(&e.to_string()), leads => Vec::<LeadRow>::new(), filtered => true,
                },
            ))
        }
    };
    let wanted = filter.status()?;
    let found = find_leads(&state.store, query, wanted).await?;
    let statuses = &found.statuses;
    let rows: Vec<LeadRow> = found
        .items
        .iter()
        .map(|l| {
            let s = &l.latest_submission;
            let text = |k: &str| s.fields.get(k).map(|v| v.as_text()).unwrap_or_default();
            LeadRow {
                id: l.id.clone(),
                email: l.email.clone(),
                name: text("name"),
                company: text("company"),
                form: s.form_id.clone(),
                source: source_of(&s.attribution),
                status: statuses
                    .get(&l.id)
                    .copied()
                    .unwrap_or(LeadStatus::Active)
                    .as_str(),
                last: console::when(s.created_at_ms),
                count: l.submission_count,
            }
        })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "leads.html",
        context! {
            user => user.view(), section => "leads", forms, flash,
            query => filter.query_string(), filtered => filter.is_filtered(),
            may_export => user.role.may_handle_data(),
            cursor => filter.cursor.as_str(), next => found.next_cursor,
            scanned => found.scanned, leads => rows, filter,
        },
    ))
}

/// Leads the status filter looks through per page at most: statuses come from the
/// suppression list's keyed hashes, which no index of the leads can join, so a page of a rare
/// status stops here and says how far it looked (the next page goes on from there).
const STATUS_SCAN: usize = 2_000;

/// A page of the lead list, each lead with its status.
struct FoundLeads {
    items: Vec<crate::store::LeadRecord>,
    statuses: std::collections::HashMap<String, LeadStatus>,
    next_cursor: Option<String>,
    /// With a status filter: how many leads were looked through for this page.
    scanned: Option<usize>,
}

async fn find_leads(
    store: &crate::store::LeadStore,
    mut query: LeadQuery,
    wanted: Option<LeadStatus>,
) -> Result<FoundLeads, ApiError> {
    let Some(wanted) = wanted else {
        let found = store.list_leads(&query).await?;
        let statuses = store.lead_statuses(&found.items).await?;
        return Ok(FoundLeads {
            items: found.items,
            statuses,
            next_cursor: found.next_cursor,
            scanned: None,
        });
    };
    let want = query.limit as usize;
    query.limit = 200;
    let mut kept = FoundLeads {
        items: Vec::new(),
        statuses: std::collections::HashMap::new(),
        next_cursor: None,
        scanned: Some(0),
    };
    let mut scanned = 0;
    loop {
        let found = store.list_leads(&query).await?;
        let statuses = store.lead_statuses(&found.items).await?;
        let mut last = None;
        for l in found.items {
            scanned += 1;
            last = Some(Cursor {
                created_at_ms: l.created_at_ms,
                id: l.id.clone(),
            });
            if statuses.get(&l.id) == Some(&wanted) {
                kept.statuses.insert(l.id.clone(), wanted);
                kept.items.push(l);
                if kept.items.len() == want {
                    break;
                }
            }
        }
        let more = found.next_cursor.is_some() || kept.items.len() == want;
        if kept.items.len() == want || scanned >= STATUS_SCAN || found.next_cursor.is_none() {
            kept.next_cursor = last.filter(|_| more).map(|c| c.encode());
            kept.scanned = Some(scanned);
            return Ok(kept);
        }
        query.after = last;
    }
}

/// `GET /console/leads/export.csv` and `export.jsonl`: the list as filtered (status too),
/// streamed a page at a time.
async fn export(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    format: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.may_handle_data()?;
    let (format, content_type) = match format.as_str() {
        "csv" => (crate::export::ExportFormat::Csv, "text/csv; charset=utf-8"),
        "jsonl" => (
            crate::export::ExportFormat::Jsonl,
            "application/jsonl; charset=utf-8",
        ),
        _ => return Err(ApiError::NotFound),
    };
    let filter = LeadFilter::parse(&req)?;
    let mut query = filter.query(&state, 500)?;
    query.after = None;
    let statuses = if query.quarantined {
        vec![LeadStatus::Quarantined]
    } else {
        filter.status()?.into_iter().collect()
    };
    query.quarantined = false;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let (store, forms) = (state.store.clone(), state.forms.clone());
    let who = user.session.user_id.clone();
    tokio::spawn(async move {
        match crate::export::export_leads(&store, &forms, format, &query, &statuses, tx).await {
            Ok(n) => tracing::info!(user_id = %who, leads = n, "console export"),
            Err(e) => tracing::warn!(user_id = %who, error = %e, "console export stopped"),
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(web::Bytes::from(chunk)), rx))
    });
    let name = format!(
        "inlet-leads-{}.{}",
        chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        if format == crate::export::ExportFormat::Csv {
            "csv"
        } else {
            "jsonl"
        }
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

async fn lead(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    super::console_qualification::sales_may_see(&state, &user, &id).await?;
    let history = state
        .store
        .lead_history(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let status = history.status().unwrap_or(LeadStatus::Active);
    let qualification = super::console_qualification::lead_context(&state, &user, &id).await?;
    let mut events = console::timeline(&history, &state.forms);
    let (enrolments, steps) = state.store.lead_enrolments(&id).await?;
    let interactions = state.store.lead_interaction_records(&id).await?;
    events.extend(console::sequence_events(
        (&enrolments, &steps),
        &interactions,
        |seq| {
            state
                .qualifier
                .sequences
                .get(seq)
                .map_or_else(|| seq.to_string(), |s| s.name.clone())
        },
    ));
    console::sort_timeline(&mut events);
    let events: Vec<_> = events
        .into_iter()
        .map(|e| {
            context! {
                when => console::when(e.at_ms), iso => crate::export::rfc3339(e.at_ms),
                kind => e.kind, tone => e.tone, title => e.title, details => e.details,
            }
        })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "lead.html",
        context! {
            user => user.view(), section => "leads",
            lead => &history.lead, status => status.as_str(),
            created => console::when(history.lead.created_at_ms),
            updated => console::when(history.lead.updated_at_ms),
            quarantined => status == LeadStatus::Quarantined,
            suppressed => history.suppressed,
            may_change => user.role.may_handle_data(),
            events, q => qualification,
        },
    ))
}

async fn export_lead(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.may_handle_data()?;
    let record = state
        .store
        .export_lead(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(user_id = %user.session.user_id, lead_id = %id, "console: one person's data exported");
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"inlet-lead-{id}.json\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(record))
}

/// `POST /console/leads/{id}/{restore|unsubscribe|erase}`: a change to one lead, by someone
/// whose role allows it, from a console page (its CSRF token).
async fn change(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    user.check_csrf(&form.csrf)?;
    user.may_handle_data()?;
    let (now, store) = (state.clock.now_ms(), &state.store);
    let (found, next) = match action.as_str() {
        "restore" => (store.restore_lead(&id, now).await?.is_some(), None),
        "unsubscribe" => (
            store
                .unsubscribe(&id, now, &crate::store::Actor::default())
                .await?
                .is_some(),
            None,
        ),
        "erase" => (
            store.erase_lead(&id, now).await?.is_some(),
            Some("/console/leads?erased=1"),
        ),
        _ => return Err(ApiError::NotFound),
    };
    if !found {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user_id = %user.session.user_id, lead_id = %id, action = %action, "console: lead changed");
    Ok(see_other(&next.map_or_else(
        || format!("/console/leads/{id}"),
        str::to_string,
    )))
}

async fn erase_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.may_handle_data()?;
    let (email, ..) = state.store.get_lead(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(page(
        &state,
        StatusCode::OK,
        "erase.html",
        context! { user => user.view(), section => "leads", id => id.as_str(), email },
    ))
}

// ---------------------------------------------------------------------------------------
// Deliveries

#[derive(Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
    /// The page goes on from messages queued before this one (an id).
    before: Option<String>,
}

/// How many messages the deliveries page lists (newest first).
const DELIVERIES_SHOWN: u32 = 200;

/// `GET /console/deliveries?status=`: the outbox's counts, and its newest messages.
async fn deliveries(
    user: ConsoleUser,
    state: web::Data<AppState>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    const STATUSES: [(&str, &str); 6] = [
        ("", "All"),
        ("pending", "Waiting"),
        ("failed", "Retrying"),
        ("dead", "Gave up"),
        ("sent", "Sent"),
        ("skipped", "Not sent"),
    ];
    let status = query.status.as_deref().unwrap_or("");
    if !STATUSES.iter().any(|(v, _)| *v == status) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "status must be pending, failed, dead, sent or skipped".into(),
        ));
    }
    let stats = state.store.outbox_stats(state.clock.now_ms()).await?;
    let before = before_id(query.before.as_deref())?;
    let mut list = state
        .store
        .list_outbox(
            (!status.is_empty()).then_some(status),
            before,
            DELIVERIES_SHOWN + 1,
        )
        .await?;
    let older = (list.len() > DELIVERIES_SHOWN as usize)
        .then(|| {
            list.truncate(DELIVERIES_SHOWN as usize);
            list.last().map(|m| m.id.clone())
        })
        .flatten();
    let messages: Vec<_> = list
        .iter()
        .map(|m| {
            let state_text = match m.status.as_str() {
                "pending" => "waiting",
                "failed" => "retrying",
                "dead" => "gave up",
                "skipped" => "not sent",
                other => other,
            };
            let when = match m.status.as_str() {
                "sent" => m.sent_at_ms.map(console::when).unwrap_or_default(),
                "pending" | "failed" => console::when(m.next_attempt_at_ms),
                _ => String::new(),
            };
            context! {
                id => m.id, lead_id => m.lead_id, recipient => m.recipient, form => m.form_id,
                kind => console::message_kind(&m.kind), status => m.status, state => state_text,
                attempts => format!("{} of {}", m.attempts, m.max_attempts),
                last_error => m.last_error, when, created => console::when(m.created_at_ms),
                retryable => matches!(m.status.as_str(), "dead" | "failed"),
            }
        })
        .collect();
    let statuses: Vec<_> = STATUSES
        .iter()
        .map(|(value, label)| context! { value, label })
        .collect();
    Ok(page(
        &state,
        StatusCode::OK,
        "deliveries.html",
        context! {
            user => user.view(), section => "deliveries", status, statuses, messages, older,
            paged => before.is_some(),
            may_retry => user.role.may_handle_data(),
            stats => context! { pending => stats.pending, failed => stats.failed, dead => stats.dead,
                                scheduled => stats.scheduled },
            oldest => stats.oldest_waiting_ms.map(console::when),
        },
    ))
}

/// `POST /console/deliveries/{id}/retry` (`all-dead`: every message that gave up): makes
/// messages due again with fresh attempts, as `inlet outbox retry` does.
async fn retry(
    user: ConsoleUser,
    state: web::Data<AppState>,
    target: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    user.may_handle_data()?;
    let target = match target.into_inner() {
        t if t == "all-dead" => crate::store::RetryTarget::AllDead,
        id => crate::store::RetryTarget::One(id),
    };
    let n = state
        .store
        .retry_outbox(&target, state.clock.now_ms())
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    state.outbox_wake.notify_one();
    tracing::info!(user_id = %user.session.user_id, messages = n, "console: messages retried");
    Ok(see_other("/console/deliveries?status=pending"))
}

// ---------------------------------------------------------------------------------------
// Forms

/// `GET /console/forms`: every configured form as the server sees it, its last 30 days by
/// source, and the code to paste.
async fn forms(user: ConsoleUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    use crate::reports::Granularity;
    use crate::store::GroupBy;
    let now = state.clock.now_ms();
    let today = now.div_euclid(crate::store::DAY_MS);
    let mut cards = Vec::new();
    for f in state.forms.all() {
        let report = crate::reports::report(
            &state.store,
            (today - 29, today),
            Granularity::Week,
            GroupBy::Source,
            Some(&f.id),
            now,
        )
        .await?;
        cards.push(context! {
            id => f.id, kind => kind_text(serde_json::to_value(f.kind)),
            double_opt_in => f.double_opt_in, download => f.delivers_download,
            challenge => match &f.challenge {
                None => "none".to_string(),
                Some(crate::challenge::Challenge::Pow { max_number }) => {
                    format!("proof of work (up to {})", count(i64::try_from(*max_number).unwrap_or(i64::MAX)))
                }
                Some(crate::challenge::Challenge::Captcha(c)) => {
                    kind_text(serde_json::to_value(c.provider))
                }
            },
            origins => match &f.origins {
                crate::forms::Origins::Any => "any site".to_string(),
                crate::forms::Origins::List(list) => list.join(", "),
            },
            min_submit => if f.min_submit_ms == 0 { "off".to_string() } else { format!("{} ms", f.min_submit_ms) },
            funnel => group_rows(&report.groups),
            fields => f.fields.iter().map(|d| context! {
                name => d.name, label => d.label, kind => kind_text(serde_json::to_value(d.kind)),
                required => d.required,
            }).collect::<Vec<_>>(),
            html => console::embed::form_html(f, &state.public_url),
        });
    }
    Ok(page(
        &state,
        StatusCode::OK,
        "forms.html",
        context! {
            user => user.view(), section => "forms", forms => cards,
            embed => state.assets.embed_tags(&state.public_url),
        },
    ))
}

/// An enum's serialised name (`inline`, `email`, …).
fn kind_text(v: Result<serde_json::Value, serde_json::Error>) -> String {
    v.ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// People

/// The people page, with what just happened (a new person's link, or an error).
async fn people_page(
    user: &ConsoleUser,
    state: &AppState,
    status: StatusCode,
    outcome: minijinja::Value,
) -> Result<HttpResponse, ApiError> {
    let people: Vec<_> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| {
            context! {
                email => u.email, role => u.role,
                password => if u.password_hash.is_some() { "set" } else { "not set yet" },
                last => u.last_sign_in_at_ms.map_or_else(|| "never".to_string(), console::when),
            }
        })
        .collect();
    Ok(page(
        state,
        status,
        "people.html",
        context! {
            user => user.view(), section => "people", people,
            link_for => console::minutes_in_words(state.settings.console.link_minutes), ..outcome
        },
    ))
}

/// `GET /console/people`: who may sign in (admins only).
async fn people(user: ConsoleUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    user.may_manage_people()?;
    people_page(&user, &state, StatusCode::OK, context! {}).await
}

#[derive(Deserialize)]
struct PersonForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /console/people`: adds a person (as `inlet users add`) and shows their one-time link.
async fn add_person(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<PersonForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    user.may_manage_people()?;
    let again = |error: String| {
        people_page(
            &user,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { error },
        )
    };
    let email = match crate::domain::EmailAddress::parse(form.email.trim()) {
        Ok(e) => e,
        Err(e) => return again(format!("That email address is not valid: {e}.")).await,
    };
    let Ok(role) = form.role.parse::<Role>() else {
        return again("Choose a role: viewer, marketer, admin or sales.".into()).await;
    };
    let now = state.clock.now_ms();
    let Some(added) = state
        .store
        .create_user(email.as_str(), role.as_str(), now)
        .await?
    else {
        return again(format!("{} has an account already.", email.as_str())).await;
    };
    let link = console::issue_link(
        &state.store,
        Some(&added.id),
        now,
        &state.settings.console,
        &state.public_url,
    )
    .await?;
    tracing::info!(user_id = %user.session.user_id, added = %added.id, role = %role, "console: person added");
    people_page(
        &user,
        &state,
        StatusCode::OK,
        context! { link, added => added.email },
    )
    .await
}

/// `POST /console/people/remove`: removes a person; their sessions end at once. Nobody
/// removes themselves (the console would be left without its admin by accident).
async fn remove_person(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<PersonForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    user.may_manage_people()?;
    if form.email == user.session.email {
        return Err(ApiError::Forbidden(
            "cannot_remove_self",
            "you cannot remove your own account; another admin can".into(),
        ));
    }
    if !state.store.remove_user(&form.email).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(user_id = %user.session.user_id, "console: person removed");
    Ok(see_other("/console/people"))
}

// ---------------------------------------------------------------------------------------
// API keys

/// The keys page, with what just happened (a new key's secret, or an error).
async fn keys_page(
    user: &ConsoleUser,
    state: &AppState,
    status: StatusCode,
    outcome: minijinja::Value,
) -> Result<HttpResponse, ApiError> {
    let keys: Vec<_> = state
        .store
        .list_api_keys()
        .await?
        .into_iter()
        .map(|k| {
            context! {
                id => k.id, prefix => k.prefix, name => k.name, scopes => k.scopes,
                made => console::when(k.created_at_ms), by => k.created_by,
                last => k.last_used_at_ms.map_or_else(|| "never".to_string(), console::when),
                revoked => k.revoked_at_ms.map(console::when),
            }
        })
        .collect();
    let scopes: Vec<_> = crate::keys::Scope::ALL
        .iter()
        .map(|s| context! { name => s.as_str(), text => s.describe() })
        .collect();
    Ok(page(
        state,
        status,
        "keys.html",
        context! { user => user.view(), section => "keys", keys, scopes, ..outcome },
    ))
}

/// `GET /console/keys`: the API keys (admins only).
async fn keys(user: ConsoleUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    user.may_manage_people()?;
    keys_page(&user, &state, StatusCode::OK, context! {}).await
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Every ticked scope (the form repeats `scope=`).
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    id: String,
}

/// `POST /console/keys`: makes a key (as `inlet keys create`) and shows it once.
async fn create_key(
    user: ConsoleUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let form: KeyForm = serde_html_form::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest("invalid_form", e.to_string()))?;
    user.check_csrf(&form.csrf)?;
    user.may_manage_people()?;
    let parsed = crate::keys::KeyName::parse(&form.name).and_then(|name| {
        crate::keys::Scopes::parse(&form.scope.join(","))
            .map(|s| (name, s))
            .map_err(|_| "Tick at least one thing the key may do.".to_string())
    });
    let (name, scopes) = match parsed {
        Ok(p) => p,
        Err(error) => {
            return keys_page(
                &user,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { error },
            )
            .await
        }
    };
    let (key, secret) = crate::keys::create(
        &state.store,
        &name,
        scopes,
        &user.session.email,
        state.clock.now_ms(),
    )
    .await?;
    tracing::info!(user_id = %user.session.user_id, key = %key.prefix, scopes = %key.scopes, "console: API key made");
    keys_page(
        &user,
        &state,
        StatusCode::OK,
        context! { secret, made => key.name },
    )
    .await
}

/// `POST /console/keys/revoke`: revokes a key; it stops working at once.
async fn revoke_key(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, ApiError> {
    user.check_csrf(&form.csrf)?;
    user.may_manage_people()?;
    let Ok(Some(key)) = state
        .store
        .revoke_api_key(&form.id, state.clock.now_ms())
        .await?
    else {
        return Err(ApiError::NotFound);
    };
    tracing::info!(user_id = %user.session.user_id, key = %key.prefix, "console: API key revoked");
    Ok(see_other("/console/keys"))
}

// ---------------------------------------------------------------------------------------
// Import

/// The import page, with the outcome of an upload (if any) and the choices it was made with.
fn import_view(
    user: &ConsoleUser,
    state: &AppState,
    status: StatusCode,
    outcome: minijinja::Value,
) -> HttpResponse {
    let forms: Vec<&str> = state.forms.all().iter().map(|f| f.id.as_str()).collect();
    page(
        state,
        status,
        "import.html",
        context! { user => user.view(), section => "leads", forms, ..outcome },
    )
}

/// `GET /console/import`: the upload form (marketers and admins).
async fn import_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    user.may_handle_data()?;
    Ok(import_view(
        &user,
        &state,
        StatusCode::OK,
        context! { chosen => context! { preset => "csv" } },
    ))
}

#[derive(actix_multipart::form::MultipartForm)]
struct ImportUpload {
    #[multipart(rename = "_csrf")]
    csrf: Option<actix_multipart::form::text::Text<String>>,
    file: actix_multipart::form::bytes::Bytes,
    form: actix_multipart::form::text::Text<String>,
    preset: actix_multipart::form::text::Text<crate::import::Preset>,
    consent: actix_multipart::form::text::Text<crate::store::ImportedState>,
    dry_run: Option<actix_multipart::form::text::Text<bool>>,
}

/// The most rows the result page lists (the CLI reports every row).
const PROBLEMS_SHOWN: usize = 500;

/// `POST /console/import`: imports the uploaded file and shows what happened.
async fn import_upload(
    user: ConsoleUser,
    state: web::Data<AppState>,
    upload: actix_multipart::form::MultipartForm<ImportUpload>,
) -> Result<HttpResponse, ApiError> {
    let upload = upload.into_inner();
    user.check_csrf(upload.csrf.as_ref().map_or("", |t| t.as_str()))?;
    user.may_handle_data()?;
    let dry_run = upload.dry_run.is_some_and(|d| *d);
    let chosen = context! {
        form => upload.form.as_str(), preset => upload.preset.0, consent => upload.consent.0, dry_run,
    };
    let Some(form) = state.forms.get(upload.form.as_str()).cloned() else {
        let error = format!(
            "There is no form called \u{201c}{}\u{201d}.",
            upload.form.as_str()
        );
        return Ok(import_view(
            &user,
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { error, chosen },
        ));
    };
    let label = upload
        .file
        .file_name
        .as_deref()
        .and_then(|f| crate::domain::clean_lossy(f, 100))
        .unwrap_or_else(|| "an upload to the console".into());
    let opts = crate::import::ImportOptions {
        preset: upload.preset.0,
        default_consent: upload.consent.0,
        map: Vec::new(),
        label,
        dry_run,
    };
    let mut problems = Vec::new();
    let mut more_problems = 0usize;
    let result = crate::import::import(
        &state.store,
        &form,
        &opts,
        &upload.file.data[..],
        state.clock.now_ms(),
        |r| {
            if matches!(
                r.outcome,
                crate::import::Outcome::Imported | crate::import::Outcome::Unchanged
            ) {
                return;
            }
            if problems.len() < PROBLEMS_SHOWN {
                problems.push(r);
            } else {
                more_problems += 1;
            }
        },
    )
    .await;
    let summary = match result {
        Ok(s) => s,
        Err(crate::import::ImportError::File(m)) => {
            let error = format!("That file cannot be imported: {m}.");
            return Ok(import_view(
                &user,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { error, chosen },
            ));
        }
        Err(crate::import::ImportError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(user_id = %user.session.user_id, form_id = %form.id, rows = summary.rows, dry_run, "console: leads imported");
    let counts: Vec<_> = [
        ("New leads", crate::import::Outcome::Imported, ""),
        (
            "Added to existing leads",
            crate::import::Outcome::Merged,
            "",
        ),
        ("Imported before", crate::import::Outcome::Unchanged, ""),
        ("Skipped", crate::import::Outcome::Skipped, "warn"),
        ("Not valid", crate::import::Outcome::Invalid, "bad"),
    ]
    .into_iter()
    .map(|(label, o, tone)| {
        context! { label, tone, n => summary.counts.get(o.as_str()).copied().unwrap_or(0) }
    })
    .collect();
    let text = crate::import::describe(&summary);
    Ok(import_view(
        &user,
        &state,
        StatusCode::OK,
        context! { summary, text, counts, problems, more_problems, chosen },
    ))
}

/// A list page's `before` (the id of the last row shown): absent or empty for the newest page;
/// otherwise an id's characters only (a 400 for anything else).
pub(super) fn before_id(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    let before = raw.filter(|b| !b.is_empty());
    if before
        .is_some_and(|b| b.len() > 64 || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "the page link is not valid".into(),
        ));
    }
    Ok(before)
}

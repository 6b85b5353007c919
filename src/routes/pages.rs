//! HTML pages people see: the thank-you page after a no-JavaScript post, the plain error page,
//! and the index. Rendered with minijinja, HTML auto-escaped: user data is always escaped.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use minijinja::{context, Environment};
use serde::Deserialize;

use crate::config::{FieldType, FormKind};
use crate::error::{ApiError, FieldErrors};
use crate::startup::AppState;

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Inlet{% endblock %}</title>
<link rel="stylesheet" href="/assets/demo.css">
{% block head %}{% endblock %}</head><body>{% block body %}{% endblock %}</body></html>"#;

const NOTICE: &str = r#"{% extends "layout.html" %}{% block title %}{{ title }}{% endblock %}
{% block body %}<h1>{{ title }}</h1><p>{{ message }}</p>
{% if action %}<form method="post" action="{{ action }}">{% for name, value in hidden|items %}
<input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
<button type="submit">{{ button }}</button></form>{% endif %}
{% if link %}<p><a href="{{ link }}">{{ link_text }}</a></p>{% endif %}{% endblock %}"#;

/// A page for a person following a link from an email: a message, and optionally a button
/// (a POST, so link scanners that prefetch GETs change nothing) or a link.
#[derive(Debug, Default, serde::Serialize)]
pub struct Notice<'a> {
    pub title: &'a str,
    pub message: String,
    pub action: Option<String>,
    pub button: Option<&'a str>,
    pub hidden: std::collections::BTreeMap<&'a str, &'a str>,
    pub link: Option<String>,
    pub link_text: Option<&'a str>,
}

/// Inlet's own pages load scripts, styles and connections from Inlet only: no inline code,
/// no third parties, not framed.
pub(super) const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

const THANKS: &str = r#"{% extends "layout.html" %}{% block title %}Thank you{% endblock %}
{% block body %}<h1>Thank you</h1><p>{{ message }}</p>
{% if download_url %}<p><a href="{{ download_url }}">Download your copy</a></p>{% endif %}
{% if back %}<p><a href="{{ back }}">Back to the page</a></p>{% endif %}{% endblock %}"#;

const ERROR: &str = r#"{% extends "layout.html" %}{% block title %}Please check the form{% endblock %}
{% block body %}<h1>{{ title }}</h1><p>{{ message }}</p>
{% if fields %}<ul>{% for name, messages in fields|items %}{% for m in messages %}
<li class="err"><strong>{{ labels[name] or name }}</strong>: {{ m }}</li>{% endfor %}{% endfor %}</ul>{% endif %}
{% if back %}<p><a href="{{ back }}">Go back and try again</a></p>
{% else %}<p>Use your browser's back button to correct the form.</p>{% endif %}{% endblock %}"#;

const HANDOFF: &str = r#"{% extends "layout.html" %}{% block title %}{{ title }}{% endblock %}
{% block body %}<main><h1>{{ title }}</h1>
{% if message %}<p role="status">{{ message }}</p>{% endif %}
<dl>
<dt>Email</dt><dd>{{ lead.email }}</dd>
{% if lead.name %}<dt>Name</dt><dd>{{ lead.name }}</dd>{% endif %}
{% if lead.company %}<dt>Company</dt><dd>{{ lead.company }}</dd>{% endif %}
{% if lead.job_title %}<dt>Job title</dt><dd>{{ lead.job_title }}</dd>{% endif %}
<dt>Status</dt><dd>{{ status }}</dd>
</dl>
<h2>Score {{ score.score }}: fit {{ score.fit }}, engagement {{ score.engagement }}</h2>
<table><caption>Why this lead scores {{ score.score }}</caption>
<thead><tr><th scope="col">Points</th><th scope="col">Because</th><th scope="col">Rule</th></tr></thead>
<tbody>{% for f in factors %}<tr><td>{{ f.points }}</td><td>{{ f.detail }}</td><td>{{ f.rule }}</td></tr>
{% else %}<tr><td colspan="3">No rule applies.</td></tr>{% endfor %}</tbody></table>
<p>Why you: {{ route }}.</p>
{% if open %}
<form method="post" action="{{ action }}"><input type="hidden" name="action" value="accept">
<button type="submit"{% if preselect == "accept" %} autofocus{% endif %}>Accept this lead</button></form>
<form method="post" action="{{ action }}"><input type="hidden" name="action" value="reject">
<label for="reason">Why it is not for sales (required to pass it back)</label>
<textarea id="reason" name="reason" required maxlength="500" rows="3"{% if preselect == "reject" %} autofocus{% endif %}></textarea>
<button type="submit">Pass it back to marketing</button></form>
{% endif %}</main>{% endblock %}"#;

/// The compiled page templates.
#[derive(Clone)]
pub struct Pages {
    env: Arc<Environment<'static>>,
}

impl Pages {
    pub fn new() -> Result<Pages, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template("layout.html", LAYOUT)?;
        env.add_template("thanks.html", THANKS)?;
        env.add_template("error.html", ERROR)?;
        env.add_template("notice.html", NOTICE)?;
        env.add_template("handoff.html", HANDOFF)?;
        env.add_template("index.html", crate::snippet::DEMO_PAGE)?;
        Ok(Pages { env: Arc::new(env) })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template = name, "page failed to render");
                "<!doctype html><title>Inlet</title><p>Something went wrong.</p>".into()
            })
    }

    /// An error as a page a person can read (for no-JavaScript form posts): fields are named
    /// by the labels the person saw on `form`.
    pub fn error_page(
        &self,
        err: &ApiError,
        back: Option<&str>,
        form: Option<&crate::forms::Form>,
    ) -> HttpResponse {
        use actix_web::ResponseError;
        let status = err.status_code();
        let title = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "Please check the form",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Please try again in a moment",
            _ => "This form could not be sent",
        };
        let fields: Option<&FieldErrors> = err.fields();
        let labels: std::collections::BTreeMap<&str, &str> = form
            .map(|f| {
                f.fields
                    .iter()
                    .map(|d| (d.name.as_str(), d.label.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        // What the person should do, as a sentence (the API's message is for developers).
        let message = if fields.is_some() {
            "Please correct what is marked below, then send the form again.".to_string()
        } else {
            let text = err.to_string();
            let mut chars = text.chars();
            chars.next().map_or_else(String::new, |c| {
                format!(
                    "{}{}.",
                    c.to_uppercase(),
                    chars.as_str().trim_end_matches('.')
                )
            })
        };
        let body = self.render(
            "error.html",
            context! { title, message, fields, back, labels },
        );
        let mut resp = html(status);
        err.decorate(&mut resp);
        resp.body(body)
    }

    /// A hand-off as its owner sees it from the email: the lead, the score's "why", and the
    /// Accept / Reject buttons while it is new.
    pub fn handoff(&self, status: StatusCode, ctx: minijinja::Value) -> HttpResponse {
        html(status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("referrer-policy", "no-referrer"))
            .body(self.render("handoff.html", ctx))
    }

    pub fn notice(&self, status: StatusCode, notice: &Notice<'_>) -> HttpResponse {
        html(status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(self.render("notice.html", minijinja::Value::from_serialize(notice)))
    }

    pub fn thanks_page(
        &self,
        message: &str,
        download_url: Option<&str>,
        back: Option<&str>,
    ) -> String {
        self.render("thanks.html", context! { message, download_url, back })
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

#[derive(Deserialize)]
pub struct ThanksQuery {
    form: Option<String>,
    /// A signed download token (download forms without double opt-in).
    download: Option<String>,
    /// The page the form was posted from, and its signature ([`crate::consent::Links::back_signature`]).
    back: Option<String>,
    sig: Option<String>,
}

/// The built-in thank-you page a no-JavaScript post lands on when its form has no redirect.
pub async fn thanks(state: web::Data<AppState>, q: web::Query<ThanksQuery>) -> HttpResponse {
    let form = q.form.as_deref().and_then(|id| state.forms.get(id));
    let message = form.map_or("Thank you! We received your submission.", |f| {
        f.success_message.as_str()
    });
    let download = q
        .download
        .as_deref()
        .filter(|t| {
            state
                .links
                .verify(crate::consent::LinkKind::Download, t)
                .is_ok()
        })
        .map(|t| format!("{}/v1/downloads/{t}", state.public_url));
    // Only a back link Inlet signed itself: a crafted URL cannot make this page link elsewhere.
    let back = match (&q.back, &q.sig) {
        (Some(url), Some(sig)) if state.links.back_verified(url, sig) => Some(url.as_str()),
        _ => None,
    };
    html(StatusCode::OK).body(state.pages.thanks_page(message, download.as_deref(), back))
}

/// An HTML answer with Inlet's page headers.
fn html(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut resp = HttpResponse::build(status);
    resp.content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "strict-origin-when-cross-origin"));
    resp
}

/// The demo landing page: every configured form, enhanced by the served embed script. Forms
/// are placed by kind: downloads as gated sections, inline forms as sections, newsletter and
/// pop-up forms as pop-ups (the first opens after a delay or on exit intent) with a plain copy
/// in the footer for visitors without JavaScript.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    let view = |f: &crate::forms::Form| {
        let fields: Vec<minijinja::Value> = f
            .fields
            .iter()
            .map(|d| {
                let (input_type, autocomplete) = match d.kind {
                    FieldType::Email => ("email", Some("email")),
                    FieldType::Tel => ("tel", Some("tel")),
                    FieldType::Url => ("url", Some("url")),
                    FieldType::Hidden => ("hidden", None),
                    _ => (
                        "text",
                        match d.name.as_str() {
                            "name" => Some("name"),
                            "company" => Some("organization"),
                            "job_title" => Some("organization-title"),
                            _ => None,
                        },
                    ),
                };
                let kind = serde_json::to_value(d.kind).ok();
                context! { name => d.name, label => d.label, required => d.required,
                kind, input_type, autocomplete, max_length => d.max_length, options => d.options }
            })
            .collect();
        context! { id => f.id, fields }
    };
    let of_kind = |kinds: &[FormKind]| -> Vec<minijinja::Value> {
        state
            .forms
            .all()
            .iter()
            .filter(|f| kinds.contains(&f.kind))
            .map(|f| view(f))
            .collect()
    };
    let page = state.pages.render(
        "index.html",
        context! {
            version => crate::snippet::VERSION,
            public_url => state.public_url,
            popup_delay_secs => 15,
            downloads => of_kind(&[FormKind::Download]),
            inline => of_kind(&[FormKind::Inline]),
            newsletters => of_kind(&[FormKind::Newsletter, FormKind::Popup]),
        },
    );
    html(StatusCode::OK).body(page)
}
